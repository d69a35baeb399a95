-- Messages and MIME bytes per mailbox and month received, live messages only.
-- Use it to size the archive per custodian and to spot gaps in coverage.
SELECT
    b.user_principal_name AS mailbox,
    date_trunc('month', m.received_at) AS month,
    count(*) AS messages,
    sum(m.size) AS bytes
FROM messages AS m
JOIN mailboxes AS b USING (mailbox_id)
GROUP BY ALL
ORDER BY mailbox, month;
