"""Server-side latency of the public portal on a large synthetic catalogue.

    python benchmarks/portal.py                                   # temporary SQLite file
    python benchmarks/portal.py --database-url postgresql://postgres@127.0.0.1:5432/test

Generates ``--opportunities`` scenario needs and ``--products`` products (Chinese text assembled
from phrase banks, across every category, city, tier, maturity and tag; two published batches
per side plus a collecting one, and about 15 % of the entries in the non-public statuses), bulk
inserts them, builds the keyword index, warms up, then requests every page type at least
``--requests`` times through the Flask test client and prints p50/p95/max (milliseconds, time
spent inside the app) and the number of SQL statements per request.

With ``--dashboard`` it also generates the 十百千 and matchmaking records that the organizers'
dashboard aggregates (responses on half the published needs, event shortlists, held meetings,
signings, stage changes, designations and targets) and times ``/programme/dashboard`` (with and
without filters), a CSV figure, the XLSX report and the public ``/achievements`` page, signed in
as an organizer; ``--skip-portal`` leaves the public pages out.

On PostgreSQL everything happens in a fresh schema (``bench_portal_<pid>``) that is dropped at
the end, so no table is left behind in the target database. It is a measurement script, not a
test.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SECRET_KEY", "benchmark-only")

from sqlalchemy import create_engine, event, func, insert, select, text, update  # noqa: E402

from marketplace import create_app  # noqa: E402
from marketplace.extensions import db  # noqa: E402
from marketplace.models import (  # noqa: E402
    Batch,
    BatchStatus,
    CooperationMode,
    Designation,
    DesignationOpportunity,
    EntryStatus,
    Event,
    Maturity,
    Meeting,
    Opportunity,
    Organization,
    OrgKind,
    Product,
    ProductField,
    ProductTag,
    ProgrammeTarget,
    Response,
    Role,
    ScenarioStage,
    Shortlist,
    ShortlistEntry,
    Signing,
    StageChange,
    Tier,
    User,
)
from marketplace.reference import load_reference  # noqa: E402
from marketplace.services import index_sync  # noqa: E402
from marketplace.services.search import build_search_index  # noqa: E402

# -------------------------------------------------------------------- phrase banks

#: Scenario subjects per category (one line per category: ``category: subject subject ...``).
SUBJECTS: dict[str, list[str]] = {
    category: subjects.split()
    for category, subjects in (line.split(": ") for line in """
政务服务: 一网通办智能审批 政务服务热线工单智能分派 电子证照共享应用 惠企政策精准推送 智能导办机器人
政府运行: 机关协同办公 公文智能校对 机关事务数字化管理 财政资金智能监管 会议纪要大模型助手
生态保护: 碳排放监测核算 水质在线监测 大气污染溯源分析 生态红线遥感监测 固废全流程监管
市场监管: 食品安全明厨亮灶 特种设备电梯安全监测 信用风险分类监管 网络交易监测 计量器具智能检定
新型智慧城市: 城市大脑运行中心 数字孪生城市底座 城市生命线安全监测 智慧社区网格化治理 城市部件智能巡查
公共安全: 重点区域视频智能分析 燃气管网泄漏监测 人员密集场所客流预警 校园安全智能防控 桥梁结构健康监测
应急管理: 危化品安全生产监管 森林防火烟火识别 自然灾害综合风险监测 应急物资智能调度 城市内涝预警
智慧水利: 水库大坝安全监测 山洪灾害预警 河湖长制智能巡河 灌区量测水 防汛指挥调度
数字乡村: 乡村治理积分制 农村人居环境智能监管 村级数字化服务站 乡村文旅数字导览 农村集体资产监管
生产制造: 工业互联网设备预测性维护 AI视觉缺陷检测 数字化车间排产 能耗在线监测 AGV智能仓储物流
金融服务: 供应链金融风控 普惠金融信用画像 小微企业融资对接 保险理赔智能审核 反洗钱智能监测
商贸流通: 冷链物流温控 智慧物流园区调度 农产品电商直播 跨境电商通关服务 商圈客流分析
现代农业: 智慧农业病虫害识别 高标准农田墒情监测 农产品质量溯源 水产养殖水质监测 农机北斗作业监测
社会保障: 居家养老跌倒监测 智慧养老服务平台 养老机构智能监测 社保待遇资格认证 困难群众精准救助
医疗健康: 互联网医院远程诊疗 慢病管理随访 医学影像智能辅助诊断 院内物资智能配送 区域健康大数据
教育就业: 智慧课堂教学分析 VR职业技能实训 校园一卡通升级 零工市场就业撮合 教育资源公共服务
交通出行: 智慧停车诱导 车路协同信号优化 公交智能调度 城市停车泊位共享 两客一危车辆监管
文化旅游: 智慧景区客流监测 VR文博数字展厅 全域旅游一码游 文物预防性保护监测 演艺场馆智能票务
""".strip().splitlines())
}
PLACES = ["老旧小区", "中心城区", "工业园区", "县域", "景区", "高校", "重点流域", "乡镇", "开发区",
          "城乡结合部"]
NEED_FORMS = ["建设", "改造提升", "试点应用", "场景需求", "能力提升项目", "示范项目"]
PRODUCT_FORMS = ["系统", "平台", "一体化解决方案", "智能终端", "管理平台", "服务平台", "大模型应用",
                 "SaaS服务"]
BACKGROUND = [
    "随着业务量持续增长，现有信息化手段难以满足精细化管理要求。",
    "辖区内相关设施点多面广，日常巡查主要依靠人工，发现问题不及时。",
    "各部门数据分散在多个系统中，缺乏统一汇聚和共享机制。",
    "群众和企业对服务便利度的期待不断提高，线下办理环节多、耗时长。",
    "近年来极端天气多发，风险隐患底数不清，预警能力亟待加强。",
    "老年人口占比持续上升，独居和高龄老人的安全照护需求突出。",
    "高峰时段车辆集中，停车位供需矛盾突出，乱停乱放现象较多。",
]
REQUIREMENTS = [
    "需要建设统一的数据采集与监测体系，实现运行状态实时感知。",
    "希望引入人工智能算法，对异常事件进行自动识别和分级预警。",
    "要求提供可视化驾驶舱，支持按区域、时间、类型进行统计分析。",
    "需要支持移动端应用，方便一线人员现场核查和闭环处置。",
    "要求与现有业务系统对接，符合信创和网络安全等级保护要求。",
    "希望采用物联网传感器和NB-IoT通信，降低部署和运维成本。",
    "需要智能监测终端与平台联动，实现一键报警和远程协助。",
]
TECH = [
    "基于物联网传感器实时采集运行数据", "采用5G与边缘计算实现毫秒级响应", "融合北斗定位与GIS一张图展示",
    "利用深度学习视频分析自动识别异常事件", "依托大数据平台开展多源数据融合分析",
    "通过数字孪生技术实现三维可视化", "结合大模型实现智能问答与报告生成", "采用低代码方式快速配置业务流程",
    "基于区块链保证数据可信可追溯", "支持NB-IoT和LoRa等多种通信方式", "通过隐私计算实现跨部门数据安全共享",
    "利用AGV和机器人替代人工作业",
]
VALUE = [
    "显著降低人工巡查成本。", "将事件发现时间从小时级缩短到分钟级。", "提升群众办事满意度。",
    "帮助管理部门科学决策。", "实现风险早发现、早预警、早处置。", "减少能耗和碳排放。",
    "提高生产效率和产品良率。", "保障老年人居家安全。", "提升城市精细化治理水平。",
]
CASES = [
    "已在南昌市、赣州市等地落地应用。", "在九江市某区开展试点，运行稳定。", "服务企业超过两百家。",
    "覆盖全省十一个设区市。", "获评省级数字经济优秀案例。", "与多家医院和养老机构开展合作。",
]
ORG_WORDS = ["智联", "数联", "云图", "慧通", "天工", "赣数", "星河", "匠心", "泊安", "瑞信",
             "鸿途", "数创", "博远", "启明", "卓越", "知行", "华章", "领航", "新元", "睿达"]
ORG_SUFFIX = ["科技有限公司", "信息技术有限公司", "智能科技股份有限公司", "数字技术有限公司", "软件有限公司"]
GOV_UNITS = ["数据局", "交通运输局", "民政局", "应急管理局", "水利局", "卫生健康委员会", "教育局",
             "农业农村局", "市场监督管理局", "生态环境局", "城市管理局", "文化广电旅游局"]

NON_PUBLIC = [EntryStatus.DRAFT, EntryStatus.SUBMITTED, EntryStatus.RETURNED, EntryStatus.APPROVED,
              EntryStatus.WITHDRAWN]

# -------------------------------------------------------------------- data generation


def _status(rng: random.Random) -> str:
    return EntryStatus.PUBLISHED if rng.random() < 0.85 else rng.choice(NON_PUBLIC)


SEARCH_QUERIES = ["停车", "养老 智能 监测", "车位", "NB-IoT", "无人机 巡检", "一网通办",
                  "工业互联网 缺陷检测", "水库 大坝 监测", "智慧景区客流", "供应链金融"]


def generate(n_opportunities: int, n_products: int, seed: int) -> dict[str, int]:
    """Bulk-insert the synthetic catalogue; returns row counts."""
    rng = random.Random(seed)
    ref = load_reference(os.environ.get("SEEDS_DIR") or str(Path(__file__).resolve().parents[1] / "seeds"))
    categories = list(ref.categories)
    cities = list(ref.cities)
    now = datetime(2026, 10, 1, 9, 30)

    # Organizations: ids assigned here so entries can refer to them.
    orgs, publishers, suppliers = [], [], []
    for i in range(400):
        city = cities[i % len(cities)]
        kind = [OrgKind.GOVERNMENT, OrgKind.INSTITUTION, OrgKind.SOE][i % 3]
        orgs.append(dict(id=len(orgs) + 1, name=f"{city}{GOV_UNITS[i % len(GOV_UNITS)]}{i}", kind=kind,
                         credit_code=f"11{i:016d}", region_city=city, verified=True, created_at=now))
        publishers.append(len(orgs))
    for i in range(3000):
        city = cities[i % len(cities)]
        name = f"江西{rng.choice(ORG_WORDS)}{rng.choice(ORG_WORDS)}{ORG_SUFFIX[i % len(ORG_SUFFIX)]}{i}"
        orgs.append(dict(id=len(orgs) + 1, name=name, kind=OrgKind.ENTERPRISE, credit_code=f"91{i:016d}",
                         region_city=city, verified=True, contact_name="李工", contact_phone="0791-86000000",
                         contact_email=f"bd{i}@example.cn", created_at=now))
        suppliers.append(len(orgs))
    db.session.execute(insert(Organization), orgs)

    batches = []
    for kind, label in (("opportunity", "机会"), ("product", "产品")):
        for n, status in ((1, BatchStatus.PUBLISHED), (2, BatchStatus.PUBLISHED),
                          (3, BatchStatus.COLLECTING)):
            batches.append(dict(
                id=len(batches) + 1, kind=kind, title=f"2026年第{n}批{label}清单", status=status,
                published_on=date(2026, 3 * n, 28) if status == BatchStatus.PUBLISHED else None,
                description=f"经各地申报、专家评审，现发布2026年第{n}批{label}清单。", created_at=now,
            ))
    db.session.execute(insert(Batch), batches)
    batch_ids = {kind: [b["id"] for b in batches if b["kind"] == kind] for kind in ("opportunity", "product")}

    def batch_for(kind: str, status: str) -> int | None:
        published, _, collecting = batch_ids[kind]
        if status == EntryStatus.PUBLISHED:
            return rng.choice(batch_ids[kind][:2])
        if status == EntryStatus.APPROVED:
            return collecting
        return None if status != EntryStatus.WITHDRAWN or rng.random() < 0.5 else published

    tiers = [t.value for t in Tier]
    modes = [m.value for m in CooperationMode]
    rows = []
    for i in range(n_opportunities):
        category = categories[i % len(categories)]
        city = cities[rng.randrange(len(cities))]
        status = _status(rng)
        subject = rng.choice(SUBJECTS[category])
        stamp = now - timedelta(minutes=i)
        lo = rng.choice([None, 20, 50, 100, 300])
        rows.append(dict(
            id=i + 1,
            title=f"{city}{rng.choice(PLACES)}{subject}{rng.choice(NEED_FORMS)}",
            description="".join([
                rng.choice(BACKGROUND), f"拟开展{subject}工作，", rng.choice(REQUIREMENTS),
                rng.choice(REQUIREMENTS), f"预期{rng.choice(VALUE)}",
            ]),
            field_category=category, field_area=ref.area_of(category), tier=rng.choice(tiers),
            region_city=city, region_county=rng.choice(ref.city_counties[city]),
            publisher_id=rng.choice(publishers),
            budget_min=Decimal(lo) if lo else None, budget_max=Decimal(lo * 3) if lo else None,
            cooperation_modes=rng.sample(modes, rng.randint(1, 3)),
            deadline=date(2027, 6, 30), contact_name="王主任", contact_phone="0791-88123456",
            status=status, batch_id=batch_for("opportunity", status),
            published_at=stamp if status == EntryStatus.PUBLISHED else None,
            created_at=stamp, updated_at=stamp,
        ))
        if len(rows) == 5000:
            db.session.execute(insert(Opportunity), rows)
            rows = []
    if rows:
        db.session.execute(insert(Opportunity), rows)

    maturities = [m.value for m in Maturity]
    products, fields, tags = [], [], []
    for i in range(n_products):
        own = rng.sample(categories, rng.choice([1, 1, 2, 3]))
        city = cities[rng.randrange(len(cities))]
        status = _status(rng)
        subject = rng.choice(SUBJECTS[own[0]])
        stamp = now - timedelta(minutes=i)
        product_id = i + 1
        products.append(dict(
            id=product_id,
            name=f"{subject}{rng.choice(PRODUCT_FORMS)}V{rng.randint(1, 5)}.{i}",
            description="".join([
                f"面向{rng.choice(PLACES)}的{subject}{rng.choice(PRODUCT_FORMS)}，",
                f"{rng.choice(TECH)}，{rng.choice(TECH)}，", rng.choice(REQUIREMENTS),
                f"可{rng.choice(VALUE)}",
            ]),
            cases=rng.choice(CASES), maturity=rng.choice(maturities),
            region_city=city, region_county=rng.choice(ref.city_counties[city]),
            owner_id=rng.choice(suppliers), status=status, batch_id=batch_for("product", status),
            published_at=stamp if status == EntryStatus.PUBLISHED else None,
            created_at=stamp, updated_at=stamp,
        ))
        fields.extend(dict(product_id=product_id, category=c, area=ref.area_of(c)) for c in own)
        tags.extend(dict(product_id=product_id, tag=t) for t in rng.sample(ref.tags, rng.randint(1, 4)))
        if len(products) == 5000:
            _flush_products(products, fields, tags)
    _flush_products(products, fields, tags)
    db.session.commit()

    if db.engine.dialect.name == "postgresql":
        for table in ("organization", "batch", "opportunity", "product"):
            db.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT max(id) FROM {table}))"))
    index_sync.bump()
    db.session.commit()
    # Fresh statistics (and, on PostgreSQL, the visibility map for index-only scans), as
    # autovacuum would provide in production.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if db.engine.dialect.name == "postgresql" else "ANALYZE"))
    return {
        "organizations": len(orgs),
        "opportunities": n_opportunities,
        "published opportunities": db.session.scalar(
            select(func.count()).where(Opportunity.status == EntryStatus.PUBLISHED)),
        "products": n_products,
        "published products": db.session.scalar(
            select(func.count()).where(Product.status == EntryStatus.PUBLISHED)),
    }


def _flush_products(products: list, fields: list, tags: list) -> None:
    if products:
        db.session.execute(insert(Product), products)
        db.session.execute(insert(ProductField), fields)
        db.session.execute(insert(ProductTag), tags)
    products.clear()
    fields.clear()
    tags.clear()


# -------------------------------------------------------------------- the dashboard's records


def _chunks(ids: list[int], size: int = 500):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def generate_programme(seed: int) -> dict[str, int]:
    """Bulk-insert what the organizers' dashboard aggregates, on top of :func:`generate`."""
    rng = random.Random(seed + 1)
    needs = db.session.execute(select(Opportunity.id, Opportunity.published_at, Opportunity.region_city)
                               .where(Opportunity.status == EntryStatus.PUBLISHED)).all()
    firms = list(db.session.scalars(select(Organization.id).where(Organization.kind == OrgKind.ENTERPRISE)))
    start = datetime(2026, 10, 1, 9, 30)
    events = [dict(id=i + 1, kind="matchmaking", title=f"2026年第{i + 1}场供需对接会", status="finished",
                   starts_at=start - timedelta(days=7 * i), capacity=80,
                   registration_deadline=date(2026, 1, 1), created_at=start) for i in range(20)]
    db.session.execute(insert(Event), events)
    responses, shortlists, entries, meetings, signings, changes = [], [], [], [], [], []
    answered, stage_of = [], {}
    statuses = ["submitted"] * 10 + ["shortlisted"] * 3 + ["selected"] * 2 + ["rejected"] * 4 + ["withdrawn"]
    for need_id, published_at, _ in needs:
        if rng.random() < 0.5:
            for firm in rng.sample(firms, rng.randint(1, 4)):
                submitted = published_at + timedelta(days=rng.randint(1, 40), hours=rng.randint(0, 23))
                status = rng.choice(statuses)
                responses.append(dict(
                    id=len(responses) + 1, opportunity_id=need_id, organization_id=firm, status=status,
                    summary="我司拟以成熟平台为基础开展试点。", delivery_plan="", contact_name="李工",
                    contact_phone="13800000000", submitted_at=submitted, created_at=submitted,
                    reviewed_at=submitted + timedelta(days=rng.randint(3, 30))
                    if status in ("shortlisted", "selected", "rejected") else None))
            answered.append((need_id, published_at))
    for need_id, published_at in rng.sample(answered, len(answered) // 5):
        event_id = rng.choice(events)["id"]
        shortlists.append(dict(id=len(shortlists) + 1, event_id=event_id, opportunity_id=need_id,
                               target_size=8, note="", proposal={}, created_at=published_at))
        for position, firm in enumerate(rng.sample(firms, rng.randint(3, 8))):
            entries.append(dict(shortlist_id=len(shortlists), organization_id=firm, position=position,
                                pinned=False, note="", sources=["recommended"], products=[],
                                publisher_requested=False, invitation_status="none",
                                created_at=published_at + timedelta(days=rng.randint(10, 50))))
        if rng.random() < 0.6:
            for firm in rng.sample(firms, rng.randint(1, 3)):
                when = published_at + timedelta(days=rng.randint(20, 70))
                meetings.append(dict(event_id=event_id, opportunity_id=need_id, organization_id=firm,
                                     starts_at=when, ends_at=when + timedelta(minutes=20),
                                     status="held" if rng.random() < 0.7 else "no_show", source="auto",
                                     note="", created_at=when))
    for need_id, published_at in rng.sample(answered, min(len(answered), 900)):
        signed_on = (published_at + timedelta(days=rng.randint(30, 120))).date()
        signings.append(dict(id=len(signings) + 1, opportunity_id=need_id, signed_on=signed_on,
                             amount_wan=Decimal(rng.randint(20, 2000)), title="场景建设项目签约", note="",
                             created_at=start))
        day, stage = signed_on, "published"
        for target in ("rnd", "pilot", "demonstration"):
            if target != "rnd" and rng.random() < 0.5:
                break
            day = day + timedelta(days=rng.randint(10, 90))
            changes.append(dict(opportunity_id=need_id, from_stage=stage, to_stage=target, happened_on=day,
                                note="", created_at=start))
            stage = target
        stage_of[need_id] = stage
    for table, rows in ((Response, responses), (Shortlist, shortlists), (ShortlistEntry, entries),
                        (Meeting, meetings), (Signing, signings), (StageChange, changes)):
        for chunk in range(0, len(rows), 5000):
            db.session.execute(insert(table), rows[chunk:chunk + 5000])
    for stage in (ScenarioStage.RND, ScenarioStage.PILOT, ScenarioStage.DEMONSTRATION):
        for ids in _chunks([i for i, s in stage_of.items() if s == stage]):
            db.session.execute(update(Opportunity).where(Opportunity.id.in_(ids)).values(stage=stage.value))

    by_city: dict[str, list[int]] = {}
    for need_id, _, city in needs:
        by_city.setdefault(city, []).append(need_id)
    designations, zone_needs = [], []
    status_pool = ["approved"] * 6 + ["recommended", "reviewing", "rejected"]
    for i in range(60):
        city = rng.choice(list(by_city))
        designations.append(dict(id=len(designations) + 1, kind="zone", year=rng.randint(2022, 2026),
                                 status=rng.choice(status_pool), name=f"{city}数字经济应用场景示范区{i}",
                                 region_city=city, description="", decision_note="", created_at=start))
        zone_needs.extend(dict(designation_id=len(designations), opportunity_id=n)
                          for n in rng.sample(by_city[city], min(5, len(by_city[city]))))
    for need_id in [i for i, s in stage_of.items() if s == "demonstration"][:350]:
        designations.append(dict(id=len(designations) + 1, kind="project", year=rng.randint(2023, 2026),
                                 status=rng.choice(status_pool), name=f"示范项目{need_id}",
                                 opportunity_id=need_id, description="", decision_note="", created_at=start))
    for firm in rng.sample(firms, 2500):
        designations.append(dict(id=len(designations) + 1, kind="firm", year=rng.randint(2022, 2026),
                                 status=rng.choice(status_pool), name=f"企业{firm}", organization_id=firm,
                                 description="", decision_note="", created_at=start))
    db.session.execute(insert(Designation), designations)
    db.session.execute(insert(DesignationOpportunity), zone_needs)
    from marketplace.services.programme import DEFAULT_TARGETS

    db.session.execute(insert(ProgrammeTarget), [
        dict(year=y, kind=k.value, cumulative=c, target=t, updated_at=start)
        for y, k, c, t in DEFAULT_TARGETS])
    # The services move the dashboard's data version with every change; so does this bulk load.
    from marketplace.services import index_sync
    from marketplace.services.dashboard import DATA_VERSION

    index_sync.bump(DATA_VERSION)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        for table in ("event", "response", "shortlist", "signing", "designation"):
            db.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT max(id) FROM {table}))"))
        db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if db.engine.dialect.name == "postgresql" else "ANALYZE"))
    return {"responses": len(responses), "shortlist entries": len(entries), "meetings": len(meetings),
            "signings": len(signings), "stage changes": len(changes), "designations": len(designations)}


def dashboard_urls(rng: random.Random, n: int) -> dict[str, list[str]]:
    ref = load_reference(os.environ.get("SEEDS_DIR") or str(Path(__file__).resolve().parents[1] / "seeds"))

    def many(make: Callable[[int], str], count: int = n) -> list[str]:
        return [make(i) for i in range(count)]

    return {
        "dashboard": many(lambda i: "/programme/dashboard"),
        "dashboard year": many(lambda i: f"/programme/dashboard?year={2024 + i % 3}"),
        "dashboard city": many(
            lambda i: "/programme/dashboard?" + urlencode({"city": rng.choice(ref.cities)})),
        "dashboard year+city": many(lambda i: "/programme/dashboard?" + urlencode(
            {"year": 2026, "city": rng.choice(ref.cities)})),
        "dashboard funnel.csv": many(lambda i: "/programme/dashboard/funnel.csv"),
        "dashboard.xlsx": many(lambda i: "/programme/dashboard.xlsx", max(n // 5, 5)),
        "achievements (public)": many(lambda i: "/achievements"),
    }


def measure_dashboard_queries(app, n: int) -> list[tuple[str, int, float, float, float, float]]:
    """Time :func:`services.dashboard.dashboard` alone (every SQL aggregate and the figures'
    tables, no HTML or charts), per filter set, warm: the brief's "dashboard queries"."""
    from marketplace.services import dashboard as dashboards

    rng = random.Random(7)
    with app.app_context():
        cities = list(load_reference(str(Path(__file__).resolve().parents[1] / "seeds")).cities)
        cases = {
            "queries: all years, province": lambda: dashboards.Filters(),
            "queries: one year": lambda: dashboards.Filters(year=rng.choice([2024, 2025, 2026])),
            "queries: one city": lambda: dashboards.Filters(city=rng.choice(cities)),
            "queries: year + city": lambda: dashboards.Filters(year=2026, city=rng.choice(cities)),
        }
        # "cold": the funnel and activity cubes recomputed, as on the first view after any change
        # (the data version moved); the others as views between changes (cached per version).
        cases["queries: province, cold"] = cases["queries: all years, province"]
        counter = StatementCounter(db.engine)
        results = []
        for name, make in cases.items():
            dashboards.dashboard(make())
            times, queries = [], []
            for _ in range(n):
                filters = make()
                if name.endswith("cold"):
                    app.extensions.pop(dashboards._CACHE, None)
                counter.count = 0
                started = time.perf_counter()
                dashboards.dashboard(filters)
                times.append((time.perf_counter() - started) * 1000)
                queries.append(counter.count)
                db.session.remove()
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
            results.append((name, n, statistics.median(times), p95, times[-1], statistics.mean(queries)))
    return results


def organizer_client(app):
    """A test client signed in as an organizer (a real login token, no password round trip)."""
    from marketplace.services import sessions

    client = app.test_client()
    with app.app_context():
        user = User(email="bench-organizer@example.cn", password_hash="x", name="基准组织方",
                    role=Role.ORGANIZER)
        db.session.add(user)
        db.session.commit()
        sessions.start_login(user, remember=False)
        user_id = user.get_id()
    with client.session_transaction() as session:
        session["_user_id"] = user_id
        session["_fresh"] = True
    return client


# -------------------------------------------------------------------- timing


class StatementCounter:
    """Statements sent and milliseconds spent in the database driver (``sql_ms``)."""

    def __init__(self, engine):
        self.count = 0
        self.sql_ms = 0.0
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._count)
        event.listen(engine, "after_cursor_execute", self._done)

    def _count(self, *args) -> None:
        self.count += 1
        self._started = time.perf_counter()

    def _done(self, *args) -> None:
        self.sql_ms += (time.perf_counter() - self._started) * 1000


def page_urls(rng: random.Random, n: int) -> dict[str, list[str]]:
    """``n`` URLs per page type."""
    published_opps = list(db.session.scalars(
        select(Opportunity.id).where(Opportunity.status == EntryStatus.PUBLISHED)))
    published_products = list(db.session.scalars(
        select(Product.id).where(Product.status == EntryStatus.PUBLISHED)))
    batches = list(db.session.scalars(select(Batch).where(Batch.status == BatchStatus.PUBLISHED)))
    ref = load_reference(os.environ.get("SEEDS_DIR") or str(Path(__file__).resolve().parents[1] / "seeds"))
    deep = max(len(published_opps) // 20 * 3 // 4, 1)
    product_pages = max(-(-len(published_products) // 20), 1)
    # The 下一页 link of page 200: after= its last row (with the page label the link carries).
    boundary = db.session.scalar(
        select(Product.id).where(Product.status == EntryStatus.PUBLISHED)
        .order_by(Product.published_at.desc(), Product.id.desc())
        .offset(min(200, product_pages) * 20 - 1).limit(1))
    deep_seek = urlencode({"after": boundary, "page": min(201, product_pages)})
    tags = list(ref.tags)
    maturities = [m.value for m in Maturity]

    def many(make: Callable[[int], str]) -> list[str]:
        return [make(i) for i in range(n)]

    def q(path: str, **params) -> str:
        return f"{path}?{urlencode(params)}"

    return {
        "home": many(lambda i: "/"),
        "opportunities p1": many(lambda i: "/opportunities"),
        f"opportunities p{deep}": many(lambda i: f"/opportunities?page={deep}"),
        "opportunities category+city": many(
            lambda i: q("/opportunities", category=rng.choice(ref.categories), city=rng.choice(ref.cities))),
        "products p1": many(lambda i: "/products"),
        f"products p{min(200, product_pages)}": many(lambda i: f"/products?page={min(200, product_pages)}"),
        f"products p{min(2100, product_pages)}": many(lambda i: f"/products?page={min(2100, product_pages)}"),
        f"products 下一页 → p{min(201, product_pages)}": many(lambda i: f"/products?{deep_seek}"),
        "products tag+maturity": many(
            lambda i: q("/products", tag=rng.choice(tags), maturity=rng.choice(maturities))),
        "products 物联网+pilot": many(lambda i: q("/products", tag="物联网", maturity="pilot")),
        "opportunities ?q=": many(lambda i: q("/opportunities", q=SEARCH_QUERIES[i % len(SEARCH_QUERIES)])),
        "products ?q=": many(lambda i: q("/products", q=SEARCH_QUERIES[i % len(SEARCH_QUERIES)])),
        "search (both sides)": many(lambda i: q("/search", q=SEARCH_QUERIES[i % len(SEARCH_QUERIES)])),
        "search 停车": many(lambda i: q("/search", q="停车")),
        "search 养老 智能 监测": many(lambda i: q("/search", q="养老 智能 监测")),
        "search products+city": many(
            lambda i: q("/search", q=SEARCH_QUERIES[i % len(SEARCH_QUERIES)], side="products",
                        city=rng.choice(ref.cities))),
        "batch page": many(lambda i: f"/batches/{batches[i % len(batches)].id}?page={1 + i % 5}"),
        "opportunity detail": many(lambda i: f"/opportunities/{rng.choice(published_opps)}"),
        "product detail": many(lambda i: f"/products/{rng.choice(published_products)}"),
    }


def measure(app, urls: dict[str, list[str]],
            client=None) -> list[tuple[str, int, float, float, float, float]]:
    client = client or app.test_client()
    with app.app_context():
        counter = StatementCounter(db.engine)
    results = []
    for name, batch in urls.items():
        for url in batch[:3]:  # warm-up (templates, caches)
            assert client.get(url).status_code == 200, url
        times, queries, sql = [], [], []
        for url in batch:
            counter.count = 0
            counter.sql_ms = 0.0
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            queries.append(counter.count)
            sql.append(counter.sql_ms)
            if response.status_code != 200:
                raise SystemExit(f"{url} -> {response.status_code}")
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
        results.append((name, len(times), statistics.median(times), p95, times[-1],
                        statistics.mean(queries), statistics.median(sql)))
    return results


def _pad(label: str, width: int) -> str:
    """Left-align ``label`` in ``width`` terminal columns (CJK characters take two)."""
    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in label)
    return label + " " * max(width - used, 1)


def measure_refresh(app) -> float:
    """Milliseconds of the first search after one published product changed.

    It includes reading the changed rows and indexing them in the worker's small delta (the
    files are not rebuilt: the build job is switched off here).
    """
    client = app.test_client()
    with app.app_context():
        product = db.session.scalar(
            select(Product).where(Product.status == EntryStatus.PUBLISHED).limit(1))
        product.description += "新增支持车位预约功能。"
        product.updated_at = datetime.now()
        index_sync.bump()
        db.session.commit()
        db.session.remove()
    started = time.perf_counter()
    assert client.get("/products?q=车位预约").status_code == 200
    return (time.perf_counter() - started) * 1000


EXPLAIN_FILTERS = [
    ("products", {}), ("products", {"tag": "物联网", "maturity": "pilot"}),
    ("products", {"area": "数字生活", "city": "南昌市"}), ("products", {"category": "交通出行"}),
    ("products", {"county": "东湖区"}), ("products", {"batch_id": 4}),
    ("opportunities", {}), ("opportunities", {"category": "交通出行", "city": "南昌市"}),
    ("opportunities", {"tier": "major", "state": "closed"}), ("opportunities", {"area": "数字生活"}),
    ("opportunities", {"county": "东湖区"}), ("opportunities", {"batch_id": 1}),
]


def explain_lists(app) -> None:
    """The plans of the list queries (page 1 ids, a page-200 ``OFFSET`` and the count) per
    filter combination: which index serves each, and (PostgreSQL) the time the server took."""
    from marketplace.services import portal
    from marketplace.services.search import EntryFilters

    with app.app_context():
        pg = db.engine.dialect.name == "postgresql"
        print("\nlist query plans (EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite)")
        for kind, values in EXPLAIN_FILTERS:
            filters = EntryFilters(**values)
            spec = (portal._product_spec if kind == "products" else portal._opportunity_spec)(filters)
            segment = spec.segments[0]
            ids = select(spec.model.id).where(*spec.public, *spec.filters, *segment.where).order_by(
                *portal._order(spec, reverse=False))
            count = select(func.count()).select_from(spec.model).where(
                *spec.public, *spec.filters, *segment.where)
            print(f"- {kind} {values or '(no filter)'} [{segment.name}]")
            # "offset": a raw OFFSET 3980 (page 200 without the ladder, and the ladder's cost).
            for label, stmt in (("page 1", ids.limit(20)), ("offset", ids.limit(20).offset(3980)),
                                ("count", count)):
                compiled = stmt.compile(dialect=db.engine.dialect)
                with db.engine.connect() as conn:
                    if pg:
                        rows = conn.exec_driver_sql("EXPLAIN ANALYZE " + str(compiled), compiled.params).all()
                    else:
                        params = tuple(compiled.params[n] for n in compiled.positiontup)
                        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params).all()
                lines = [str(r[-1]).strip() for r in rows]
                if pg:
                    used = sorted({m for line in lines for m in re.findall(r"(?:Index Only Scan|Index Scan|"
                                   r"Bitmap Index Scan|Seq Scan)(?: Backward)?(?: using \w+)? on \w+", line)})
                    took = next((line for line in lines if line.startswith("Execution Time")), "")
                    print(f"    {label:<9}{'; '.join(used)}  ({took})")
                else:
                    print(f"    {label:<9}{'; '.join(lines)}")


def print_table(results, title: str) -> None:
    print(f"\n{title}")
    print(f"{_pad('page', 30)}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'queries':>9}"
          f"{'SQL p50':>9}")
    for name, n, p50, p95, worst, queries, *sql in results:
        flag = "" if p95 < 50 else "  > 50 ms"
        sql_ms = f"{sql[0]:>9.1f}" if sql else f"{'-':>9}"
        print(f"{_pad(name, 30)}{n:>5}{p50:>10.1f}{p95:>10.1f}{worst:>10.1f}{queries:>9.1f}{sql_ms}{flag}")


# -------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--opportunities", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=100, help="requests per page type")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--explain", action="store_true",
                        help="also print the plans of the list queries for several filter combinations")
    parser.add_argument("--dashboard", action="store_true",
                        help="also generate the dashboard's records and time the organizers' dashboard")
    parser.add_argument("--skip-portal", action="store_true", help="do not time the public portal pages")
    args = parser.parse_args()

    tmpdir = tempfile.TemporaryDirectory(prefix="bench-portal-")
    url = args.database_url or f"sqlite:///{Path(tmpdir.name) / 'portal.db'}"
    config = {"SQLALCHEMY_DATABASE_URI": url, "MATCHING_INDEX_DIR": str(Path(tmpdir.name) / "index"),
              "MATCHING_ENABLED": False, "HUEY_IMMEDIATE": True, "SEARCH_BUILD_ON_CHANGE": False}
    schema = None
    if url.startswith("postgresql"):
        schema = f"bench_portal_{os.getpid()}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_pre_ping": True, "connect_args": {"options": f"-csearch_path={schema}"},
        }
    app = create_app(config)
    try:
        with app.app_context():
            db.create_all()
            started = time.perf_counter()
            counts = generate(args.opportunities, args.products, args.seed)
            generated = time.perf_counter() - started
            build = build_search_index().seconds  # the background job's work (issue 13)
            print(f"database: {db.engine.dialect.name}{f' (schema {schema})' if schema else ''}")
            print("rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            print(f"data generation and bulk insert: {generated:.1f} s")
            print(f"keyword index build (both sides, published only): {build:.1f} s")
            urls = page_urls(random.Random(args.seed), args.requests)
            if args.dashboard:
                started = time.perf_counter()
                extra = generate_programme(args.seed)
                print("dashboard rows: " + ", ".join(f"{k} {v}" for k, v in extra.items())
                      + f" ({time.perf_counter() - started:.1f} s)")
                board_urls = dashboard_urls(random.Random(args.seed), args.requests)
            db.session.remove()
        if args.explain:
            explain_lists(app)
        if not args.skip_portal:
            results = measure(app, urls)
            print_table(results, f"server time per request ({args.requests} requests per page type)")
            print(f"\nfirst product search after one product changed (delta, no rebuild): "
                  f"{measure_refresh(app):.0f} ms")
        if args.dashboard:
            results = measure(app, board_urls, organizer_client(app))
            print_table(results, "organizers' dashboard pages, signed in (HTML with charts and tables)")
            print_table(measure_dashboard_queries(app, args.requests),
                        "dashboard queries alone (services.dashboard.dashboard; p95 target: 200 ms)")
    finally:
        with app.app_context():
            db.session.remove()
            if schema is None:
                db.drop_all()
            db.engine.dispose()
        if schema is not None:
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
        tmpdir.cleanup()


if __name__ == "__main__":
    main()
