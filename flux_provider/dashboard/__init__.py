"""The dashboard in Airflow's UI and the JSON API behind it (mounted at ``/flux`` by the plugin): what every
data set, source and the fleet are doing, read in bulk from Airflow's metadata DB and the throttle's tables."""
