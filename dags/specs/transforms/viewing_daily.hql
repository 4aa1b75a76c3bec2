-- Viewing sessions per day, genre and country, joined to the latest dimension snapshots.
SELECT
  t.genre,
  s.country,
  COUNT(*)                       AS sessions,
  COUNT(DISTINCT v.subscriber_id) AS viewers,
  SUM(v.seconds_watched)         AS seconds_watched,
  CAST(to_date(v.started_at) AS STRING) AS day
FROM {{ staging }} v
LEFT JOIN media.titles_latest t ON t.title_id = v.title_id
LEFT JOIN media.subscribers_latest s ON s.subscriber_id = v.subscriber_id
GROUP BY t.genre, s.country, to_date(v.started_at)
