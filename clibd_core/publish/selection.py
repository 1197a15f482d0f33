"""Which specimens of a project may be published, and why each other one is left out."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from clibd_core.projects.schema import Project, Specimen


@dataclass
class Selection:
    specimens: list[Specimen] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # sample id, why

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, why in self.left_out:
            counts[why] = counts.get(why, 0) + 1
        return counts


def publishable(session: Session, project: Project, verified_only: bool = True) -> Selection:
    """Specimens with a stated name (verified by a person, or any named one when ``verified_only`` is
    off) and coordinates; controls, unidentifiable and unnamed specimens are listed with the reason."""
    chosen = Selection()
    specimens = session.scalars(
        select(Specimen)
        .where(Specimen.project_id == project.id)
        .order_by(Specimen.id)
        .options(selectinload(Specimen.identifications), selectinload(Specimen.queries), selectinload(Specimen.event))
    )
    for specimen in specimens:
        determination = specimen.determination
        event = specimen.event
        if specimen.control:
            why = "a control well"
        elif specimen.status == "not_identifiable":
            why = "not identifiable (a person said so)"
        elif verified_only and specimen.status != "verified":
            why = "unverified (no person has reviewed it)"
        elif determination is None or not determination.taxon:
            why = "no name stated (no rank reached the confidence to be stated)"
        elif event is None or event.latitude is None or event.longitude is None:
            why = "no coordinates"
        else:
            chosen.specimens.append(specimen)
            continue
        chosen.left_out.append((specimen.sample_id, why))
    return chosen
