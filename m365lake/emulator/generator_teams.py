"""Generate teams with channel conversations in an emulated tenant.

The conversations contain what a Teams archive must keep. There are threads with replies,
an edited message, a soft-deleted reply, a mention, a reaction, a pasted image (hosted
content) and a file shared from the team's SharePoint library. One thread is older than
the eight months that channel message delta covers. Dates count back from ``now``,
because the delta window is relative to the present.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from m365lake.emulator import samplefiles
from m365lake.emulator.model import Tenant
from m365lake.emulator.seed import SeedSite


@dataclass(frozen=True)
class GeneratedThread:
    """Ids of the notable messages the generator made, for tests."""

    team_id: str
    channel_id: str
    root_id: str
    edited_id: str
    deleted_reply_id: str
    old_root_id: str
    file_drive_id: str
    file_item_id: str


def generate_teams(tenant: Tenant, *, now: datetime | None = None) -> GeneratedThread | None:
    """Add two teams with conversations; return the notable ids, or None with < 2 users.

    Users come from the tenant's directory (the first mailbox users), so the generator
    works on a corpus tenant too.
    """
    users = [info.user.user_principal_name for info in tenant.users() if info.has_mailbox]
    if len(users) < 2:
        return None
    first, second = users[0], users[1]
    third = users[2] if len(users) > 2 else users[0]
    start = (now or datetime.now(UTC)).replace(microsecond=0) - timedelta(days=30)

    falcon = tenant.add_team(
        "Project Falcon", mail_nickname="falcon", description="Falcon launch planning"
    )
    legal = tenant.add_team("Legal Review", mail_nickname="legalreview", visibility="public")
    tenant.add_site(SeedSite("falcon", "Project Falcon"))
    drive_id = tenant.drive_id_for("site", "falcon", "Documents")
    plan = samplefiles.docx_document(["Falcon launch plan", "Milestones and owners."])
    file_id = tenant.add_file("site", "falcon", "Documents", ("General", "Launch plan.docx"), plan)
    general = tenant.channel_id(falcon, "General")
    design = tenant.add_channel(falcon, "Design", description="Design reviews")

    root = tenant.post_channel_message(
        falcon,
        general,
        first,
        "<p>Kick-off on Monday. The launch plan is attached.</p>",
        subject="Falcon kick-off",
        created_at=start,
        mentions=[second],
        file_links=[(drive_id, file_id)],
    )
    tenant.post_channel_message(
        falcon,
        general,
        second,
        "<p>Thanks, I will review the milestones.</p>",
        reply_to=root,
        created_at=start + timedelta(minutes=5),
    )
    deleted = tenant.post_channel_message(
        falcon,
        general,
        third,
        "<p>Budget numbers are in the old sheet, ignore the new one.</p>",
        reply_to=root,
        created_at=start + timedelta(minutes=9),
    )
    edited = tenant.post_channel_message(
        falcon,
        general,
        first,
        "<p>Updated date: launch on the 14th.</p>",
        reply_to=root,
        created_at=start + timedelta(minutes=12),
    )
    tenant.edit_channel_message(falcon, general, edited, "<p>Updated date: launch on the 21st.</p>")
    tenant.soft_delete_channel_message(falcon, general, deleted)
    tenant.add_reaction(falcon, general, root, second, "like")

    mockup = samplefiles.png_image(32, 24, shade=90)
    design_root = tenant.post_channel_message(
        falcon,
        design,
        second,
        "<p>First mock-up of the landing page:</p>",
        created_at=start + timedelta(days=1),
        hosted_images=[(mockup, "image/png")],
    )
    tenant.post_channel_message(
        falcon,
        design,
        first,
        "<p>Looks good. Can we try a darker header?</p>",
        reply_to=design_root,
        created_at=start + timedelta(days=1, minutes=20),
    )

    legal_general = tenant.channel_id(legal, "General")
    old_root = tenant.post_channel_message(
        legal,
        legal_general,
        third,
        "<p>Retention schedule for supplier contracts, for the record.</p>",
        created_at=start - timedelta(days=300),
    )
    tenant.post_channel_message(
        legal,
        legal_general,
        first,
        "Noted, filed under contracts.",
        reply_to=old_root,
        body_type="text",
        created_at=start - timedelta(days=299),
    )
    tenant.post_channel_message(
        legal,
        legal_general,
        second,
        "<p>NDA template v3 is approved.</p>",
        importance="high",
        created_at=start + timedelta(days=2),
    )
    return GeneratedThread(
        team_id=falcon,
        channel_id=general,
        root_id=root,
        edited_id=edited,
        deleted_reply_id=deleted,
        old_root_id=old_root,
        file_drive_id=drive_id,
        file_item_id=file_id,
    )
