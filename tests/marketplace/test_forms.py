"""Field validation of the workspace forms: a Chinese error beside the field, the input kept.

Bad input never reaches the database and never produces a 500.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from marketplace.models import Opportunity, Product

KEPT_PHONE = "0791-88123456"  # contact phone of OPPORTUNITY_FORM, kept on every re-render


@pytest.fixture
def member(auth, make):
    user = make.user(make.org(kind="enterprise"))
    auth.login(user)
    return user


def opportunity_form(make, **changes) -> dict:
    data = dict(make.OPPORTUNITY_FORM)
    data.update(changes)
    return data


def product_form(make, **changes) -> dict:
    data = dict(make.PRODUCT_FORM)
    data.update(changes)
    return data


def count(db, model) -> int:
    return db.session.scalar(select(func.count(model.id)))


def error_beside(html: str, field_id: str) -> str:
    """The error texts rendered in the grid column of the control with this id."""
    start = html.index(f'id="{field_id}"')
    end = min(i for i in (html.find('<div class="col', start), html.find("</form>", start)) if i != -1)
    return " ".join(re.findall(r'invalid-feedback d-block">([^<]+)<', html[start:end]))


OPPORTUNITY_CASES = [
    ("title", {"title": "短标题"}, "标题应为4–120个字"),
    ("title", {"title": "长" * 121}, "标题应为4–120个字"),
    ("description", {"description": "描述太短了"}, "需求描述应为20–5000个字"),
    ("description", {"description": "长" * 5001}, "需求描述应为20–5000个字"),
    ("field_category", {"field_category": "火星探索"}, "请选择有效的应用领域"),
    ("field_category", {"field_category": ""}, "请选择应用领域"),
    ("tier", {"tier": "epic"}, "请选择有效的场景层级"),
    ("cooperation_modes", {"cooperation_modes": ["procurement", "barter"]}, "合作方式无效"),
    ("cooperation_modes", {"cooperation_modes": []}, "请至少选择一种合作方式"),
    ("budget_max", {"budget_min": "200", "budget_max": "100"}, "预算上限不能低于预算下限"),
    ("budget_min", {"budget_min": "-5"}, "金额不能为负数"),
    ("budget_max", {"budget_max": "很多"}, "请输入数字"),
    ("budget_min", {"budget_min": "NaN"}, "请输入合理的金额"),
    ("budget_max", {"budget_max": "1e400"}, "请输入合理的金额"),
    ("deadline", {"deadline": "2026-13-45"}, "日期格式无效"),
    ("deadline", {"deadline": "下个月"}, "日期格式无效"),
    ("region_county", {"region_city": "南昌市", "region_county": "浔阳区"}, "所选区县不属于南昌市"),
    ("region_city", {"region_city": "火星市"}, "请选择有效的设区市"),
    ("contact_phone", {"contact_phone": "call me"}, "请输入有效的电话号码"),
    ("contact_name", {"contact_name": "名" * 51}, "联系人不能超过50个字"),
]


@pytest.mark.parametrize(
    ("field", "changes", "message"),
    OPPORTUNITY_CASES,
    ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(OPPORTUNITY_CASES)],
)
def test_opportunity_form_errors(auth, make, db, member, field, changes, message):
    response = auth.post("/my/opportunities/new", opportunity_form(make, **changes))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert message in error_beside(html, field)
    if field != "contact_phone":
        assert f'value="{KEPT_PHONE}"' in html
    if field != "title":
        assert make.OPPORTUNITY_FORM["title"] in html
    assert count(db, Opportunity) == 0


def test_rejected_opportunity_form_keeps_selections(auth, make, member):
    response = auth.post("/my/opportunities/new", opportunity_form(make, title="短"))
    html = response.get_data(as_text=True)
    assert re.search(r'<option selected value="交通出行">', html)
    assert re.search(r'<option selected value="focused">', html)
    assert re.search(r'<input checked[^>]*value="joint_rnd"', html)
    assert not re.search(r'<input checked[^>]*value="operation"', html)
    assert 'value="50"' in html and 'value="120"' in html
    assert make.OPPORTUNITY_FORM["description"] in html


def test_optional_opportunity_fields_may_be_blank(auth, make, db, member):
    response = auth.post(
        "/my/opportunities/new",
        opportunity_form(make, budget_min="", budget_max="", deadline="", region_county=""),
    )
    assert response.status_code == 302
    entry = db.session.scalar(select(Opportunity))
    assert entry.budget_min is None and entry.budget_max is None
    assert entry.deadline is None and entry.region_county is None
    assert entry.budget_label == "面议"


PRODUCT_CASES = [
    ("name", {"name": "A"}, "产品名称应为2–120个字"),
    ("name", {"name": "长" * 121}, "产品名称应为2–120个字"),
    ("description", {"description": "太短"}, "产品介绍应为20–5000个字"),
    ("fields", {"fields": []}, "请至少选择一个应用领域"),
    ("fields", {"fields": ["交通出行", "火星探索"]}, "应用领域无效"),
    ("fields", {"fields": ["政务服务", "政府运行", "生态保护", "市场监管", "公共安全", "应急管理"]},
     "应用领域最多选择5个"),
    ("tags", {"tags": ["物联网", "读心术"]}, "技术标签无效"),
    ("maturity", {"maturity": "legendary"}, "请选择有效的成熟度"),
    ("cases", {"cases": "例" * 5001}, "典型案例不能超过5000个字"),
    ("region_county", {"region_city": "赣州市", "region_county": "东湖区"}, "所选区县不属于赣州市"),
]


@pytest.mark.parametrize(
    ("field", "changes", "message"),
    PRODUCT_CASES,
    ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(PRODUCT_CASES)],
)
def test_product_form_errors(auth, make, db, member, field, changes, message):
    response = auth.post("/my/products/new", product_form(make, **changes))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert message in error_beside(html, field)
    if field != "name":
        assert make.PRODUCT_FORM["name"] in html
    assert make.PRODUCT_FORM["cases"][:10] in html or field == "cases"
    assert count(db, Product) == 0


def test_edit_form_errors_keep_input_and_leave_the_entry_alone(auth, make, db, member):
    entry = make.opportunity(member.organization)
    response = auth.post(
        f"/my/opportunities/{entry.id}/edit",
        opportunity_form(make, title="一个全新的标题", description="太短"),
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "需求描述应为20–5000个字" in error_beside(html, "description")
    assert 'value="一个全新的标题"' in html
    db.session.expire_all()
    assert db.session.get(Opportunity, entry.id).title == make.OPPORTUNITY_FORM["title"]


def test_edit_form_is_prefilled_from_the_entry(auth, client, make, member):
    entry = make.product(member.organization, fields=("交通出行", "文化旅游"), tags=("5G",))
    html = client.get(f"/my/products/{entry.id}/edit").get_data(as_text=True)
    assert f'value="{make.PRODUCT_FORM["name"]}"' in html
    assert 'value="交通出行" checked' in html and 'value="文化旅游" checked' in html  # 应用领域 checkboxes
    assert 'value="医疗健康" checked' not in html
    assert re.search(r'<input checked[^>]*value="5G"', html)
    assert not re.search(r'<input checked[^>]*value="物联网"', html)
