-- docker-compose.yaml's sqlserver-init: the source database and the login the pipeline uses.
-- sqlcmd takes $(FLUX_MSSQL_PASSWORD) from the environment, so the password is in no command line.
IF DB_ID('flux') IS NULL CREATE DATABASE flux;
GO
IF SUSER_ID('flux') IS NULL CREATE LOGIN flux WITH PASSWORD = '$(FLUX_MSSQL_PASSWORD)', DEFAULT_DATABASE = flux;
GO
USE flux;
GO
IF USER_ID('flux') IS NULL CREATE USER flux FOR LOGIN flux;
ALTER ROLE db_owner ADD MEMBER flux;
GO
