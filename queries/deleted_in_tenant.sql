-- Messages deleted in the tenant that the archive still keeps, with when Graph reported it.
SELECT
    b.user_principal_name AS mailbox,
    v.folder_path,
    v.subject,
    v.from_address,
    v.received_at,
    v.deleted_at
FROM message_versions AS v
JOIN mailboxes AS b USING (mailbox_id)
WHERE v.deleted_at IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY v.mailbox_id, v.message_id ORDER BY v.captured_at DESC) = 1
ORDER BY v.deleted_at DESC;
