-- Viewing sessions per day, genre and country, joined to the dimensions' snapshots of the run's day
-- (the fact's run for a day starts once both dimensions wrote that day's partition).
SELECT
  t.genre,
  s.country,
  COUNT(*)                       AS sessions,
  COUNT(DISTINCT v.subscriber_id) AS viewers,
  SUM(v.seconds_watched)         AS seconds_watched,
  CAST(to_date(v.started_at) AS STRING) AS day
FROM {{ staging }} v
LEFT JOIN media.titles t ON t.title_id = v.title_id AND t.snapshot_day = '{{ flux_day }}'
LEFT JOIN media.subscribers s ON s.subscriber_id = v.subscriber_id AND s.snapshot_day = '{{ flux_day }}'
GROUP BY t.genre, s.country, to_date(v.started_at)
