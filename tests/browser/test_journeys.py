"""The main journeys, by clicking and typing in headless Chromium (issue 12).

Each journey starts from a page a user would open, ends by checking what the user sees, checks
the browser console (no errors, no failed requests) and leaves screenshots at 1366×900 and
390×844 in ``tests/browser/artifacts/``. The journeys share one seeded live server, so each one
makes its own data or picks what it needs from the seeds.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from marketplace import timeutil
from marketplace.credit_code import make_code
from tests.browser.support import field, login, shoot

pytestmark = [pytest.mark.browser, pytest.mark.no_app]


def open_menu(page: Page, name: str) -> None:
    """Open a navbar menu (a <details> element) by its label."""
    page.locator("nav.navbar summary", has_text=name).click()


def test_register_an_organisation(page, live, console):
    page.goto(live.url)
    page.get_by_role("link", name="单位注册").click()
    field(page, "单位名称").fill("九江长江智慧航运科技有限公司")
    field(page, "单位类型").select_option(label="民营企业")
    field(page, "统一社会信用代码").fill(make_code("91", "360400", "MA39XY7Q"))
    field(page, "所在设区市").select_option("九江市")
    county = field(page, "区县")
    expect(county.locator("optgroup[label='九江市']")).not_to_have_attribute("hidden", "")
    expect(county.locator("optgroup[label='南昌市']")).to_have_attribute("hidden", "")  # other cities'
    county.select_option("濂溪区")
    field(page, "联系人").fill("刘航")
    field(page, "联系电话").fill("0792-8123456")
    field(page, "姓名").fill("刘航")
    field(page, "登录邮箱").fill("liuhang@jjcj-shipping.cn")
    field(page, "手机").fill("13907920001")
    field(page, "密码").fill("Lushan-Poyang-2026")
    field(page, "确认密码").fill("Lushan-Poyang-2026")
    shoot(page, "register-form", full_page=True)
    page.get_by_role("button", name="提交注册").click()

    expect(page.locator(".alert")).to_contain_text("注册申请已提交")
    field(page, "邮箱").fill("liuhang@jjcj-shipping.cn")
    field(page, "密码").fill("Lushan-Poyang-2026")
    page.locator("main").get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="我的工作台")).to_be_visible()
    expect(page.locator("main")).to_contain_text("本单位尚未通过组织方认证")
    shoot(page, "register-done")
    console.assert_clean()


def test_draft_and_submit_a_need(page, live, accounts, console):
    login(page, live.url, accounts["gov"])
    page.locator("nav.navbar").get_by_role("link", name="我的工作台").click()
    page.locator("main").get_by_role("link", name="发布场景需求").click()
    title = "南昌市地铁站点周边共享单车潮汐调度"
    field(page, "标题").fill(title)
    field(page, "需求描述").fill(
        "早晚高峰地铁站点周边共享单车供需失衡，部分站点堆积、部分站点无车可借，"
        "需要基于骑行数据预测潮汐需求，实现多品牌车辆的统一调度和电子围栏管理。"
    )
    field(page, "应用领域").select_option("交通出行")
    field(page, "场景层级").select_option(label="高价值小切口场景")
    field(page, "所在设区市").select_option("南昌市")
    field(page, "区县").select_option("红谷滩区")
    field(page, "预算下限（万元）").fill("80")
    field(page, "预算上限（万元）").fill("150")
    field(page, "答题截止日期").fill((timeutil.local_today() + timedelta(days=45)).isoformat())
    field(page, "联合研发").check()
    shoot(page, "need-form", full_page=True)
    page.get_by_role("button", name="保存").click()

    expect(page.locator(".alert-success")).to_contain_text("已保存为草稿")
    page.get_by_role("button", name="提交审核").click()
    expect(page.locator(".alert-success")).to_contain_text("已提交审核")
    expect(page.locator("main")).to_contain_text("待审核")
    shoot(page, "need-submitted")
    console.assert_clean()


def test_organizer_reviews_in_bulk_and_publishes_a_batch(page, live, accounts, console):
    login(page, live.url, accounts["organizer"])
    title = "2026年第四批机会清单（集中评审）"
    open_menu(page, "组织方")
    page.get_by_role("link", name="组织方后台").click()
    page.locator("main .nav-pills").get_by_role("link", name="清单批次").click()
    page.get_by_role("link", name="新建批次").click()
    field(page, "清单类型").select_option(label="机会清单")
    field(page, "批次名称").fill(title)
    page.locator("main").get_by_role("button", name=re.compile("创建|保存|新建")).click()

    page.locator("main .nav-pills").get_by_role("link", name="审核队列").click()
    queue = page.locator("#bulk-opportunity")
    field(queue, "批量通过入选批次").select_option(label=title)
    boxes = queue.locator("tbody input[type=checkbox]")
    picked = [boxes.nth(0).get_attribute("aria-label"), boxes.nth(1).get_attribute("aria-label")]
    boxes.nth(0).check()
    boxes.nth(1).check()
    expect(queue.locator("[data-bulk-count]")).to_have_text("（2）")
    shoot(page, "review-queue")
    queue.get_by_role("button", name=re.compile("批量通过所选")).click()

    expect(page.get_by_role("heading", name=re.compile("确认将以下 2 个"))).to_be_visible()
    shoot(page, "review-bulk-confirm")
    page.get_by_role("button", name="确认批量通过（2 个）").click()
    expect(page.locator(".alert-success")).to_contain_text(f"已批量审核通过2个条目，入选「{title}」")
    for label in picked:
        expect(page.get_by_label(label, exact=True)).to_have_count(0)  # left the queue

    page.locator("main .nav-pills").get_by_role("link", name="清单批次").click()
    page.get_by_role("link", name=title).click()
    page.get_by_role("button", name=re.compile(r"发布批次（2条）")).click()  # confirm() accepted
    expect(page.locator(".alert-success")).to_be_visible()
    page.goto(f"{live.url}/batches")
    expect(page.locator("main")).to_contain_text(title)
    shoot(page, "batch-published")
    console.assert_clean()


def test_candidate_products_with_reasons(page, live, accounts, console):
    login(page, live.url, accounts["gov"])
    needs = page.locator("#needs .need-item")
    expect(needs.first).to_be_visible()
    expect(needs.first.locator(".reason").first).to_contain_text("推荐理由")
    needs.first.get_by_role("link", name="全部候选产品").click()
    cards = page.locator("[data-result-id]")
    expect(cards.first).to_be_visible()
    assert cards.count() >= 3
    expect(cards.first.locator("[data-reason]")).to_contain_text("推荐理由：")
    expect(cards.first.locator("[data-breakdown]")).to_be_visible()
    shoot(page, "candidates")
    console.assert_clean()


def test_a_firm_lands_on_the_opportunities_that_fit_it(page, live, accounts, console):
    login(page, live.url, accounts["firm"])
    expect(page.get_by_role("heading", name="适合我的机会")).to_be_visible()
    expect(page.locator("#tab-products")).to_have_class(re.compile("active"))
    fits = page.locator("#fits .fit-item")
    assert fits.count() >= 3
    expect(fits.first.locator(".reason")).to_contain_text("推荐理由：")
    expect(page.locator("#my-responses")).to_be_visible()
    shoot(page, "firm-workspace")
    fits.first.locator("a[href*='/matching/products/']").first.click()
    expect(page.get_by_role("heading", name=re.compile("适合我的机会："))).to_be_visible()
    expect(page.locator("[data-reason]").first).to_contain_text("推荐理由：")
    shoot(page, "firm-fits-for-product")
    console.assert_clean()


def test_keyword_search_with_filters(page, live, console):
    page.goto(live.url)
    search = page.locator("nav.navbar").get_by_role("searchbox")
    search.fill("停车")
    search.press("Enter")
    expect(page.locator("main mark").first).to_have_text(re.compile("停车"))
    shoot(page, "search")

    page.locator("nav.navbar").get_by_role("link", name="机会清单").click()
    field(page, "关键词").fill("停车")
    field(page, "地市").select_option("南昌市")
    county = field(page, "区县")
    expect(county).to_be_enabled()  # filled at once, before 筛选
    expect(county.locator("option", has_text="东湖区")).to_have_count(1)
    county.select_option("东湖区")
    page.get_by_role("button", name="筛选").click()
    expect(page).to_have_url(re.compile(r"city=%E5%8D%97%E6%98%8C%E5%B8%82.*county=|county=.*city="))
    cards = page.locator("main .entry-card")
    expect(cards.first).to_be_visible()
    for text in cards.locator(".entry-meta").first.all_inner_texts():
        assert "南昌市" in text
    shoot(page, "filters")
    console.assert_clean()


def test_a_firm_answers_a_need(page, live, accounts, console):
    login(page, live.url, accounts["firm"])
    fit = page.locator("#fits .fit-item", has=page.get_by_role("link", name="我要答题")).first
    need_title = fit.locator("h3").inner_text()
    fit.get_by_role("link", name="我要答题").click()
    expect(page.get_by_role("heading", name=re.compile("我要答题"))).to_be_visible()
    field(page, "方案摘要").fill(
        "我司以视频智能分析平台为基础，结合边缘计算盒子与现有摄像头资源，针对场景中的识别与预警需求，"
        "部署算法模型并接入业务系统，三个月内完成试点验证，六个月内推广至全部点位，提供驻场运维。"
    )
    page.locator("#product_ids input[type=checkbox]").first.check()
    field(page, "实施计划与周期").fill("第1月调研与方案深化，第2–3月部署试点，第4月验收。")
    field(page, "报价（万元，选填）").fill("96")
    shoot(page, "response-form", full_page=True)
    page.get_by_role("button", name="提交答题").click()
    expect(page.locator("main")).to_contain_text("已提交")
    expect(page.locator("main")).to_contain_text(need_title)
    shoot(page, "response-submitted")
    console.assert_clean()


def test_organizer_curates_a_shortlist_for_an_event(page, live, accounts, console):
    login(page, live.url, accounts["organizer"])
    page.goto(f"{live.url}/events/manage")
    page.get_by_role("link", name="智慧交通场景沙龙：停车诱导与公交安全").click()
    page.locator("main").get_by_role("link", name=re.compile(r"\d+ 家候选")).first.click()
    expect(page.get_by_role("heading", name=re.compile("对接名单"))).to_be_visible()
    unpinned = page.locator("#shortlist .shortlist-entry[data-pinned='0']")  # pinned ones stay on top
    first = unpinned.nth(0).locator(".fw-semibold").inner_text().split(". ", 1)[1]
    second = unpinned.nth(1).locator(".fw-semibold").inner_text().split(". ", 1)[1]
    unpinned.nth(1).get_by_role("button", name="上移").click()
    unpinned = page.locator("#shortlist .shortlist-entry[data-pinned='0']")
    expect(unpinned.nth(0).locator(".fw-semibold")).to_contain_text(second)
    expect(unpinned.nth(1).locator(".fw-semibold")).to_contain_text(first)
    shoot(page, "shortlist")
    console.assert_clean()


def test_signing_in_shows_the_personal_home_page_at_once(page, live, accounts, console):
    """The anonymous home page is publicly cacheable; the browser must still not show its stored
    anonymous copy to the visitor who has just signed in (it revalidates with its cookies)."""
    page.goto(f"{live.url}/")
    expect(page.locator("nav.navbar")).to_contain_text("登录")
    page.goto(f"{live.url}/products")
    login(page, live.url, accounts["firm"])
    for url in ("/", "/products"):
        page.goto(f"{live.url}{url}")
        expect(page.locator("nav.navbar")).to_contain_text("退出")
    page.locator("nav.navbar .nav-user-name").click()  # opens the account menu
    page.locator("nav.navbar").get_by_role("button", name="退出").click()
    page.wait_for_load_state()
    page.goto(f"{live.url}/")
    expect(page.locator("nav.navbar")).not_to_contain_text("退出")
    console.assert_clean()
