-- The 20 sender domains with the most live messages, with distinct senders per domain.
SELECT
    lower(split_part(from_address, '@', 2)) AS domain,
    count(*) AS messages,
    count(DISTINCT lower(from_address)) AS senders
FROM messages
WHERE from_address LIKE '%@%'
GROUP BY domain
ORDER BY messages DESC, domain
LIMIT 20;
