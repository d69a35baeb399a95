-- Teams channel messages that were edited or deleted in Teams, with how many versions the archive keeps.
SELECT
    t.display_name AS team,
    c.display_name AS channel,
    m.message_id,
    m.reply_to_id,
    m.from_name,
    m.created_at,
    m.edited_at,
    m.soft_deleted_at,
    count(*) OVER (PARTITION BY v.team_id, v.channel_id, v.message_id) AS versions
FROM channel_messages AS m
JOIN channel_message_versions AS v USING (team_id, channel_id, message_id)
LEFT JOIN teams AS t USING (team_id)
LEFT JOIN channels AS c USING (team_id, channel_id)
WHERE m.edited_at IS NOT NULL OR m.soft_deleted_at IS NOT NULL
QUALIFY row_number() OVER (
    PARTITION BY v.team_id, v.channel_id, v.message_id ORDER BY v.captured_at DESC
) = 1
ORDER BY coalesce(m.soft_deleted_at, m.edited_at) DESC;
