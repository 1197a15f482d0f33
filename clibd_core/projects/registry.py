"""Projects by name: create, open, list."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clibd_core.projects.db import ProjectError
from clibd_core.projects.schema import Project, Specimen, WatchTaxon


def create_project(
    session: Session, name: str, title: str = "", description: str = "", watch: list[str] = ()
) -> Project:
    name = name.strip()
    if not name or len(name) > 200:
        raise ProjectError("a project needs a name of 1 to 200 characters")
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise ProjectError(f"a project named {name} exists: open it, or choose another name")
    project = Project(name=name, title=title or name, description=description, licence="", contact={})
    set_watch_list(project, list(watch))
    session.add(project)
    session.flush()
    return project


def set_watch_list(project: Project, taxa: list[str]) -> None:
    """Replace the watch list (specimens re-enter the queue's order at their next identification)."""
    wanted = [taxon for taxon in dict.fromkeys(t.strip() for t in taxa) if taxon]
    kept = {w.name: w for w in project.watch_taxa if w.name in wanted}  # a kept name is not deleted and re-added
    project.watch_taxa = [kept.get(taxon) or WatchTaxon(name=taxon) for taxon in wanted]


def get_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name.strip()))
    if project is None:
        known = session.scalars(select(Project.name).order_by(Project.name).limit(10)).all()
        hint = f" (projects here: {', '.join(known)})" if known else " (create it with: clibd project create NAME)"
        raise ProjectError(f"no project named {name}{hint}")
    return project


def list_projects(session: Session) -> list[dict]:
    counts = dict(session.execute(select(Specimen.project_id, func.count()).group_by(Specimen.project_id)).all())
    return [
        {"name": p.name, "title": p.title, "specimens": counts.get(p.id, 0), "created": p.created_at.isoformat()}
        for p in session.scalars(select(Project).order_by(Project.name))
    ]
