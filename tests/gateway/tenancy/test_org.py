"""Departments, projects and users: CRUD, validation and the rules that keep references whole."""

from __future__ import annotations

import pytest
import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from gateway.catalog import catalog_version
from gateway.errors import InvalidRequest
from gateway.tenancy import store
from tests.gateway.tenancy.conftest import ACTOR


def _org(db: sqlite_utils.Database) -> None:
    store.create_department(db, ACTOR, name="eng", description="Engineering")
    store.create_project(db, ACTOR, name="search", department="eng")
    store.create_user(db, ACTOR, name="bob", email="bob@example.com", department="eng")


def test_department_crud(db: sqlite_utils.Database) -> None:
    row = store.create_department(db, ACTOR, name="eng", description="Engineering")
    assert row["name"] == "eng" and row["created_at"] == row["updated_at"]
    assert store.get_department(db, "eng")["description"] == "Engineering"
    changed = store.update_department(db, ACTOR, "eng", {"description": "R&D"})
    assert changed["description"] == "R&D"
    assert [d["name"] for d in store.list_departments(db)] == ["eng"]
    store.delete_department(db, ACTOR, "eng")
    assert store.list_departments(db) == []
    with pytest.raises(NotFoundError):
        store.get_department(db, "eng")


def test_every_write_bumps_the_version(db: sqlite_utils.Database) -> None:
    before = catalog_version(db)
    _org(db)
    store.update_user(db, ACTOR, "bob", {"email": None})
    assert catalog_version(db) == before + 4


@pytest.mark.parametrize("name", ["", "-lead", "has space", "x" * 129, "semi;colon"])
def test_bad_names_are_refused(db: sqlite_utils.Database, name: str) -> None:
    with pytest.raises(InvalidRequest, match="is not valid"):
        store.create_department(db, ACTOR, name=name)


def test_duplicates_and_missing_references(db: sqlite_utils.Database) -> None:
    _org(db)
    with pytest.raises(ConflictError, match="already exists"):
        store.create_department(db, ACTOR, name="eng")
    with pytest.raises(ConflictError):
        store.create_project(db, ACTOR, name="search", department="eng")
    with pytest.raises(NotFoundError, match="no department named 'ops'"):
        store.create_project(db, ACTOR, name="p2", department="ops")
    with pytest.raises(NotFoundError):
        store.create_user(db, ACTOR, name="eve", department="ops")
    with pytest.raises(NotFoundError):
        store.update_project(db, ACTOR, "search", {"department": "ops"})
    with pytest.raises(NotFoundError):
        store.update_department(db, ACTOR, "ops", {"description": "x"})


def test_bad_fields_are_refused(db: sqlite_utils.Database) -> None:
    _org(db)
    with pytest.raises(InvalidRequest, match="not an email"):
        store.create_user(db, ACTOR, name="eve", email="eve")
    with pytest.raises(InvalidRequest, match="unknown or read-only"):
        store.update_department(db, ACTOR, "eng", {"name": "other"})
    with pytest.raises(InvalidRequest, match="at most"):
        store.update_department(db, ACTOR, "eng", {"description": "x" * 2000})
    with pytest.raises(InvalidRequest, match="must be a string"):
        store.update_project(db, ACTOR, "search", {"department": None})


def test_user_fields_can_be_cleared(db: sqlite_utils.Database) -> None:
    _org(db)
    row = store.update_user(db, ACTOR, "bob", {"email": None, "department": None})
    assert row["email"] is None and row["department"] is None
    assert store.list_users(db, department="eng") == []


def test_objects_in_use_cannot_be_deleted(db: sqlite_utils.Database) -> None:
    _org(db)
    with pytest.raises(ConflictError, match=r"1 project\(s\)"):
        store.delete_department(db, ACTOR, "eng")
    key, _ = store.create_key(db, ACTOR, name="k", project="search", user="bob")
    with pytest.raises(ConflictError, match=r"key\(s\)"):
        store.delete_project(db, ACTOR, "search")
    with pytest.raises(ConflictError, match=r"key\(s\)"):
        store.delete_user(db, ACTOR, "bob")
    store.revoke_key(db, ACTOR, key["id"])
    store.delete_key(db, ACTOR, key["id"])
    store.delete_project(db, ACTOR, "search")
    with pytest.raises(ConflictError, match=r"user\(s\)"):
        store.delete_department(db, ACTOR, "eng")
    store.delete_user(db, ACTOR, "bob")
    store.delete_department(db, ACTOR, "eng")
    with pytest.raises(NotFoundError):
        store.delete_department(db, ACTOR, "eng")


def test_filters(db: sqlite_utils.Database) -> None:
    _org(db)
    store.create_department(db, ACTOR, name="ops")
    store.create_project(db, ACTOR, name="infra", department="ops")
    assert [p["name"] for p in store.list_projects(db)] == ["infra", "search"]
    assert [p["name"] for p in store.list_projects(db, "ops")] == ["infra"]
    assert [u["name"] for u in store.list_users(db, "eng")] == ["bob"]
