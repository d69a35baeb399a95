-- Attachments over 1 MB, largest first, each distinct content once with the number
-- of messages that carry it: the storage that deduplicated blobs save.
SELECT
    content_sha256,
    any_value(name) AS name,
    any_value(content_type) AS content_type,
    max(size) AS size,
    count(DISTINCT message_id) AS messages
FROM attachments
WHERE size > 1000000
GROUP BY content_sha256
ORDER BY size DESC;
