"""Fixtures for the matching engine tests (no Flask app involved)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from matching import Item, MatchEngine, build_encoder

PRODUCTS = [
    Item(
        1,
        "product",
        "智慧停车诱导系统",
        "基于地磁传感器与视频识别实时采集路内外泊位状态，通过诱导屏和小程序为驾驶员提供车位诱导、"
        "预约停车和无感支付，缓解老城区找车位难。",
        categories=("交通出行",),
        areas=("数字生活",),
        region_city="南昌市",
        region_county="东湖区",
        tags=("物联网", "人工智能"),
        maturity="scale",
    ),
    Item(
        2,
        "product",
        "城市级停车运营平台",
        "整合全市公共停车场与路侧泊位数据，提供停车资源一张图、共享停车、收费稽核和运营分析。",
        categories=("交通出行", "新型智慧城市"),
        areas=("数字生活", "数字治理"),
        region_city="赣州市",
        tags=("大数据", "云计算"),
        maturity="pilot",
    ),
    Item(
        3,
        "product",
        "居家养老跌倒监测终端",
        "毫米波雷达非接触监测老年人跌倒、离床和呼吸心率，异常时一键呼叫家属和社区网格员。",
        categories=("社会保障",),
        areas=("数字生活",),
        region_city="南昌市",
        region_county="青山湖区",
        tags=("物联网", "智能传感"),
        maturity="scale",
    ),
    Item(
        4,
        "product",
        "适老化智慧养老服务平台",
        "面向民政部门和养老机构，提供老人档案、助餐助浴、上门服务派单和补贴发放管理。",
        categories=("社会保障",),
        areas=("数字生活",),
        region_city="九江市",
        tags=("大数据", "云计算"),
        maturity="pilot",
    ),
    Item(
        5,
        "product",
        "水库大坝安全监测预警系统",
        "对库区水位、雨量、坝体渗流和位移进行在线监测，结合北斗定位实现汛期预警和巡查管理。",
        categories=("智慧水利",),
        areas=("数字治理",),
        region_city="九江市",
        region_county="武宁县",
        tags=("北斗/GIS", "物联网"),
        maturity="scale",
    ),
    Item(
        6,
        "product",
        "无人机智能巡检平台",
        "无人机自动航线巡检河道、电力线路和森林，视频分析识别烟火、违建和漂浮物。",
        categories=("应急管理", "智慧水利"),
        areas=("数字治理",),
        region_city="上饶市",
        tags=("无人机", "视频分析"),
        maturity="pilot",
    ),
    Item(
        7,
        "product",
        "工业互联网设备预测性维护系统",
        "采集机床和产线振动、电流数据，构建设备健康模型，实现故障预测和备件优化，助力数字化车间。",
        categories=("生产制造",),
        areas=("智能生产",),
        region_city="新余市",
        tags=("工业互联网", "人工智能"),
        maturity="scale",
    ),
    Item(
        8,
        "product",
        "AI视觉缺陷检测一体机",
        "基于深度学习的工业视觉质检设备，适用于陶瓷、光伏组件和电子元件的表面瑕疵检测。",
        categories=("生产制造",),
        areas=("智能生产",),
        region_city="景德镇市",
        tags=("人工智能", "视频分析"),
        maturity="pilot",
    ),
    Item(
        9,
        "product",
        "一网通办智能审批平台",
        "政务服务事项材料智能预审、电子证照自动调用，实现高频事项秒批秒办和跨省通办。",
        categories=("政务服务",),
        areas=("数字政府",),
        region_city="南昌市",
        region_county="红谷滩区",
        tags=("大模型", "低代码"),
        maturity="scale",
    ),
    Item(
        10,
        "product",
        "VR沉浸式职业技能实训系统",
        "利用VR/AR构建焊接、电工和护理虚拟仿真实训场景，支持考核评分，服务职业教育和企业培训。",
        categories=("教育就业",),
        areas=("数字生活",),
        region_city="萍乡市",
        tags=("VR/AR",),
        maturity="rnd",
    ),
    Item(
        11,
        "product",
        "智慧景区客流监测与导览平台",
        "基于5G和视频分析统计景区客流，提供智能导览、预约购票和拥堵预警。",
        categories=("文化旅游",),
        areas=("数字生活",),
        region_city="上饶市",
        tags=("5G", "视频分析"),
        maturity="scale",
    ),
    Item(
        12,
        "product",
        "农产品质量溯源区块链平台",
        "赣南脐橙等农产品从种植、采摘到物流全程上链溯源，消费者扫码查看产地信息。",
        categories=("现代农业",),
        areas=("智能生产",),
        region_city="赣州市",
        tags=("区块链",),
        maturity="pilot",
    ),
    Item(
        13,
        "product",
        "智慧停车诱导系统（二期）",
        "基于地磁传感器与视频识别实时采集路内外泊位状态，通过诱导屏和小程序为驾驶员提供车位诱导、"
        "预约停车和无感支付，缓解老城区找车位难，新增充电桩联动。",
        categories=("交通出行",),
        areas=("数字生活",),
        region_city="南昌市",
        region_county="西湖区",
        tags=("物联网", "人工智能"),
        maturity="pilot",
    ),
]

OPPORTUNITIES = [
    Item(
        101,
        "opportunity",
        "老城区停车难综合治理",
        "老城区道路狭窄，车位紧张，群众反映找车位难。希望建设停车诱导和泊位共享系统，实时发布空余车位。",
        categories=("交通出行",),
        areas=("数字生活",),
        region_city="南昌市",
        region_county="东湖区",
        tags=("物联网",),
    ),
    Item(
        102,
        "opportunity",
        "独居老人居家安全监护",
        "辖区独居老人较多，需要对摔倒等意外及时发现并通知家属和社区，保护隐私，不装摄像头。",
        categories=("社会保障",),
        areas=("数字生活",),
        region_city="南昌市",
        region_county="青山湖区",
    ),
    Item(
        103,
        "opportunity",
        "中小水库防汛安全监测",
        "全县中小型水库数量多、人员少，需要自动监测水位雨量和大坝安全，汛期自动预警。",
        categories=("智慧水利",),
        areas=("数字治理",),
        region_city="九江市",
        region_county="武宁县",
        tags=("物联网",),
    ),
    Item(
        104,
        "opportunity",
        "陶瓷企业质检智能化改造",
        "陶瓷产品表面缺陷依赖人工目检，效率低、漏检多，寻求机器视觉自动检测方案。",
        categories=("生产制造",),
        areas=("智能生产",),
        region_city="景德镇市",
    ),
]


@pytest.fixture(scope="session")
def fitted_encoder():
    """An offline encoder fitted on the fixture corpus (shared; do not refit it)."""
    from matching import document_text

    encoder = build_encoder("offline")  # explicit: never the installed e5-small
    encoder.fit([document_text(i) for i in PRODUCTS + OPPORTUNITIES])
    return encoder


@pytest.fixture
def engine(fitted_encoder) -> MatchEngine:
    """A fresh engine built on the fixture corpus."""
    eng = MatchEngine(fitted_encoder)
    eng.build(PRODUCTS + OPPORTUNITIES)
    return eng


@pytest.fixture(scope="session")
def tiny_st_model(tmp_path_factory) -> Path:
    """A random-weight 2-layer BERT (hidden size 32) saved as a sentence-transformers folder."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    root = tmp_path_factory.mktemp("tiny_st")
    bert_dir = root / "bert"
    bert_dir.mkdir()
    chars = sorted(set("".join(i.title + i.text for i in PRODUCTS + OPPORTUNITIES)))
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *[c for c in chars if c.strip()],
        *"abcdefghijklmnopqrstuvwxyz0123456789",
    ]
    vocab = list(dict.fromkeys(vocab))
    (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(bert_dir)
    transformers.BertTokenizer(str(bert_dir / "vocab.txt")).save_pretrained(bert_dir)
    transformer = Transformer(str(bert_dir), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    model_dir = root / "st-model"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(model_dir))
    return model_dir


@pytest.fixture
def offline_env(monkeypatch):
    """HF_HUB_OFFLINE is set by the encoder for local folders; keep that out of other tests."""
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
