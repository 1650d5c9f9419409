"""The 营业执照 / 统一社会信用代码证书 (issue 11 §2): uploaded at registration or later from the
organization's pages through the upload rules (sniffed type, size limit, stored outside the web
root), shown only to that organization's members and to organizers and admins.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from marketplace.models import Notification, Organization, StoredFile
from marketplace.services import accounts
from tests.marketplace.test_account_members import browser_for
from tests.marketplace.test_auth import registration
from tests.marketplace.test_security import isolated

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def upload(client, org_id: int, content: bytes = PNG, name: str = "营业执照.png"):
    return isolated(client, "POST", f"/auth/organizations/{org_id}/license",
                    data={"license": (io.BytesIO(content), name)}, content_type="multipart/form-data")


def stored_files(db) -> list[StoredFile]:
    db.session.expire_all()
    return list(db.session.scalars(select(StoredFile).order_by(StoredFile.id)))


@pytest.fixture
def people(make):
    org = make.org(name="江西赣数科技有限公司", verified=False)
    other = make.org(name="赣州市智慧城市运营有限公司")
    return {
        "org": org,
        "org_admin": make.user(org, org_admin=True),
        "colleague": make.user(org),
        "other_member": make.user(other),
        "organizer": make.organizer(),
        "admin": make.admin(),
    }


# ---------------------------------------------------------------- at registration


def test_registration_stores_an_optional_license(client, auth, db, app):
    data = registration(license=(io.BytesIO(PDF), "统一社会信用代码证书.pdf"))
    response = auth.post("/auth/register", data, content_type="multipart/form-data")
    assert response.status_code == 302
    organization = db.session.scalar(select(Organization))
    stored = organization.license_file
    assert (stored.purpose, stored.content_type, stored.original_name) == (
        "license", "application/pdf", "统一社会信用代码证书.pdf")
    assert stored.owner_organization_id == organization.id
    assert (Path(app.config["UPLOAD_DIR"]) / stored.storage_name).read_bytes() == PDF


def test_registration_without_a_license_still_works(auth, db):
    assert auth.post("/auth/register", registration()).status_code == 302
    assert db.session.scalar(select(Organization)).license_file_id is None


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [(b"GIF89a" + b"\x00" * 20, "执照.gif", "只接受"), (b"hello", "执照.png", "只接受"),
     (b"", "执照.pdf", "文件为空")],
    ids=["gif", "text-named-png", "empty"],
)
def test_registration_refuses_other_files_beside_the_field(auth, db, content, name, message):
    response = auth.post("/auth/register", registration(license=(io.BytesIO(content), name)),
                         content_type="multipart/form-data")
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Organization)) == 0
    assert stored_files(db) == []


def test_registration_with_a_taken_email_stores_no_file(auth, db, make):
    make.user(make.org(), email="lina@gsdata.cn")
    response = auth.post("/auth/register", registration(license=(io.BytesIO(PNG), "执照.png")),
                         content_type="multipart/form-data")
    assert response.status_code == 302  # the same answer as a new registration
    assert stored_files(db) == []


def test_an_oversized_license_is_refused(auth, db, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_UPLOAD_MB", 0.001)
    big = PNG + b"\x00" * 2048
    response = auth.post("/auth/register", registration(license=(io.BytesIO(big), "执照.png")),
                         content_type="multipart/form-data")
    assert "文件不能超过" in response.get_data(as_text=True)


# ---------------------------------------------------------------- later, from the organization's pages


def test_profile_page_links_to_the_license_page(app, people):
    html = isolated(browser_for(app, people["colleague"]), "GET", "/my/organization").get_data(as_text=True)
    assert f"/auth/organizations/{people['org'].id}/license" in html and "尚未上传" in html


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 302), ("org_admin", 302), ("colleague", 302), ("other_member", 403), ("organizer", 302),
     ("admin", 302)],
)
def test_upload_permission_matrix(app, db, people, who, status):
    response = upload(browser_for(app, people.get(who)), people["org"].id)
    assert response.status_code == status
    stored = len(stored_files(db))
    assert stored == (1 if who not in (None, "other_member") else 0)
    if who is None:
        assert "/auth/login" in response.headers["Location"]


def test_replacing_the_license_deletes_the_old_file(app, db, people):
    client = browser_for(app, people["colleague"])
    upload(client, people["org"].id)
    [old] = stored_files(db)
    old_path = Path(app.config["UPLOAD_DIR"]) / old.storage_name
    upload(client, people["org"].id, PDF, "新证照.pdf")
    [new] = stored_files(db)
    assert new.original_name == "新证照.pdf"
    assert db.session.get(Organization, people["org"].id).license_file_id == new.id
    assert not old_path.exists()


def test_a_verified_organization_cannot_swap_its_license_without_a_pending_change(app, db, people):
    client = browser_for(app, people["colleague"])
    upload(client, people["org"].id)
    people["org"].verified = True
    db.session.commit()
    response = upload(client, people["org"].id, PDF, "别的文件.pdf")
    assert response.status_code == 200
    assert "单位已认证，证照已存档" in response.get_data(as_text=True)
    assert [f.original_name for f in stored_files(db)] == ["营业执照.png"]


def test_a_pending_identity_change_allows_a_new_license_and_tells_the_organizers(app, db, people):
    client = browser_for(app, people["colleague"])
    upload(client, people["org"].id)
    organization = db.session.get(Organization, people["org"].id)
    organization.verified = True
    organization.pending_name = "江西赣数智能科技有限公司"
    organization.pending_since = organization.created_at
    db.session.commit()
    assert upload(client, people["org"].id, PDF, "变更后执照.pdf").status_code == 302
    assert [f.original_name for f in stored_files(db)] == ["变更后执照.pdf"]
    titles = db.session.scalars(select(Notification.title).where(
        Notification.user_id == people["organizer"].id)).all()
    assert titles == ["「江西赣数科技有限公司」为名称或信用代码变更上传了新的证照"]


def test_a_wrong_type_is_shown_beside_the_field(app, db, people):
    response = upload(browser_for(app, people["colleague"]), people["org"].id, b"MZ\x90\x00", "执照.pdf")
    assert response.status_code == 200
    assert "只接受 PDF、JPEG、PNG 文件" in response.get_data(as_text=True)
    assert stored_files(db) == []


def test_an_upload_without_a_file_is_refused(app, db, people):
    response = isolated(browser_for(app, people["colleague"]), "POST",
                        f"/auth/organizations/{people['org'].id}/license", data={},
                        content_type="multipart/form-data")
    assert response.status_code == 200 and "请选择要上传的文件" in response.get_data(as_text=True)


def test_upload_needs_the_csrf_token(app, db, people):
    client = browser_for(app, people["colleague"])
    with app.app_context():
        response = client.post(f"/auth/organizations/{people['org'].id}/license",
                               data={"license": (io.BytesIO(PNG), "执照.png")},
                               content_type="multipart/form-data")
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert stored_files(db) == []


# ---------------------------------------------------------------- seeing it


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 302), ("org_admin", 200), ("colleague", 200), ("other_member", 403), ("organizer", 200),
     ("admin", 200)],
)
def test_download_permission_matrix(app, db, people, who, status):
    upload(browser_for(app, people["colleague"]), people["org"].id)
    response = isolated(browser_for(app, people.get(who)), "GET",
                        f"/auth/organizations/{people['org'].id}/license/file")
    assert response.status_code == status
    if status == 200:
        assert response.data == PNG
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 302), ("colleague", 200), ("other_member", 403), ("organizer", 200)],
)
def test_license_page_permission_matrix(app, people, who, status):
    client = browser_for(app, people.get(who))
    response = isolated(client, "GET", f"/auth/organizations/{people['org'].id}/license")
    assert response.status_code == status


def test_images_may_be_previewed_inline_but_pdfs_are_always_downloads(app, db, people):
    organizer = browser_for(app, people["organizer"])
    upload(browser_for(app, people["colleague"]), people["org"].id)
    url = f"/auth/organizations/{people['org'].id}/license/file?inline=1"
    assert isolated(organizer, "GET", url).headers["Content-Disposition"].startswith("inline")
    upload(browser_for(app, people["colleague"]), people["org"].id, PDF, "执照.pdf")
    assert isolated(organizer, "GET", url).headers["Content-Disposition"].startswith("attachment")


def test_no_license_yet_is_a_404(app, people):
    response = isolated(browser_for(app, people["organizer"]), "GET",
                        f"/auth/organizations/{people['org'].id}/license/file")
    assert response.status_code == 404


def test_the_verifying_organizer_sees_the_license_on_the_admin_organization_page(app, db, people):
    upload(browser_for(app, people["colleague"]), people["org"].id)
    html = isolated(browser_for(app, people["organizer"]), "GET",
                    f"/admin/organizations/{people['org'].id}").get_data(as_text=True)
    assert "营业执照.png" in html
    assert f"/auth/organizations/{people['org'].id}/license/file" in html


def test_the_permission_function_answers_for_pages_and_services_alike(people):
    org = people["org"]
    assert accounts.can(people["colleague"], "view_license", org)
    assert accounts.can(people["organizer"], "view_license", org)
    assert not accounts.can(people["other_member"], "view_license", org)
    assert not accounts.can(None, "view_license", org)
