"""The dashboard in a real browser: headless Chromium opens ``/api/dashboard?code=<key>``
on the desk served over HTTP after a few trades, and the page must have drawn its charts
and tables (read back from the rendered DOM), refreshed itself through its data route with
the key it was opened with, asked nothing of any host but the app's (read back from
Chromium's network log), and painted them (a screenshot, kept as a test artefact under
``tests/e2e/artifacts/``)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from adapters.simulated_broker import SimulatorConfig
from domain.risk import RiskLimits
from tests.functions.desk import FUNCTION_KEY, Desk, make_desk

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 1800
# The page's own colours (triggers/static/dashboard.html): the chart series, and the bars
# of fills that cost money and that made money.
SERIES = (0x2F, 0x6F, 0xDE)
COST = (0xC4, 0x32, 0x0A)
GAIN = (0x12, 0x80, 0x5C)

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}
LIMITS = RiskLimits(
    max_position_notional=Decimal(20_000),
    max_gross_exposure=Decimal(100_000),
    max_open_orders=10,
    daily_loss_limit=Decimal(500),
    max_order_quantity=Decimal(1000),
)


def chromium(user_data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (`make test` installs it)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        # The browser's own background requests go nowhere: the test never leaves the machine.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={user_data}",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


def place(desk: Desk, body: dict[str, Any]) -> None:
    response = desk.http("POST", "orders", json=body)
    assert response.status_code == 202, response.text


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """A strategy trade (latency), manual buys and a sale at a profit (P&L, slippage both
    ways) and a resting limit order (an open order, reserved risk)."""
    made = make_desk(
        tmp_path_factory.mktemp("dashboard"),
        strategies=[SMA],
        simulator=SimulatorConfig(slippage_bps=Decimal(5)),
        risk_limits=LIMITS,
    )
    try:
        made.prices("AAPL", [100.0, 100.0, 100.0, 101.0])
        made.prices("MSFT", [300.0])
        made.settle(2)
        place(made, {"symbol": "MSFT", "side": "buy", "quantity": "5"})
        made.prices("MSFT", [300.0])
        made.settle(2)
        place(
            made,
            {
                "symbol": "MSFT",
                "side": "buy",
                "quantity": "3",
                "order_type": "limit",
                "limit_price": "250",
            },
        )
        made.prices("AAPL", [102.0, 103.0])
        made.settle(2)
        place(made, {"symbol": "MSFT", "side": "sell", "quantity": "2"})
        made.prices("MSFT", [305.0])
        made.settle(2)
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def expected(desk: Desk) -> dict[str, Any]:
    response = desk.http("GET", "dashboard/data")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    assert len(data["pnl"]["curve"]) == 3 and data["latency"]["count"] == 1
    return data


# -- the rendered DOM -----------------------------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    within: tuple[str, ...]  # the ids of the elements it sits in
    text: list[str] = field(default_factory=list)


class Dom(HTMLParser):
    """Every element of a serialised page with its attributes and the ids around it."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "source", "wbr"})

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        within = tuple(e.attrs["id"] for e in self._open if "id" in e.attrs)
        element = Element(tag, values, within)
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text.append(data)

    def find(self, tag: str, *, within: str, cls: str | None = None) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag
            and within in e.within
            and (cls is None or cls in e.attrs.get("class", "").split())
        ]

    def by_id(self, ident: str) -> Element:
        [found] = [e for e in self.elements if e.attrs.get("id") == ident]
        return found


Rendered = tuple[Dom, Path]  # the page as rendered, and the network log of the visit


@pytest.fixture(scope="module")
def dom(desk: Desk, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The page after its script ran and refreshed once (virtual time lets the refresh
    timer fire without waiting for it), and the network log of the visit."""
    ARTIFACTS.mkdir(exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-dom")
    net_log = profile / "net-log.json"
    shown = chromium(
        profile,
        "--virtual-time-budget=5000",
        f"--log-net-log={net_log}",
        "--dump-dom",
        desk.url(f"dashboard?code={FUNCTION_KEY}"),
    )
    (ARTIFACTS / "dashboard.dom.html").write_text(shown.stdout, encoding="utf-8")
    return Dom(shown.stdout), net_log


def test_the_charts_drew_from_the_desks_data(dom: Rendered, expected: dict[str, Any]) -> None:
    page, _ = dom
    [pnl] = page.find("path", within="pnl-chart", cls="series")
    # A step per fill after the first: H(orizontal) then V(ertical) to the new level.
    steps = re.findall(r"[HV]-?[0-9.]+", pnl.attrs["d"])
    assert len(steps) == 2 * (len(expected["pnl"]["curve"]) - 1) + 1
    assert pnl.attrs["data-points"] == str(len(expected["pnl"]["curve"]))
    levels = {float(v[1:]) for v in steps if v.startswith("V")}
    assert len(levels) == 2  # flat while buying, then up on the sale

    [latency] = page.find("polyline", within="latency-chart", cls="series")
    points = latency.attrs["points"].split()
    assert len(points) >= expected["latency"]["count"]
    assert all(re.fullmatch(r"-?[0-9.]+,-?[0-9.]+", p) for p in points)
    assert {e.attrs["class"] for e in page.find("line", within="latency-chart", cls="ref")} == {
        "ref p50",
        "ref p99",
    }

    bars = page.find("rect", within="slippage-chart", cls="bar")
    assert len(bars) == expected["slippage"]["count"] == 3
    costs = [b for b in bars if "cost" in b.attrs["class"].split()]
    assert len(costs) == 2  # two buys paid 5 bp; the sale beat its reference
    assert all(float(b.attrs["height"]) >= 1 for b in bars)


def test_the_tables_and_risk_show_the_books(dom: Rendered, expected: dict[str, Any]) -> None:
    page, _ = dom
    rows = [r for r in page.find("tr", within="positions") if r.attrs.get("data-row")]
    assert [r.text[0] for r in rows] == ["AAPL", "MSFT"]  # one text per cell, in order
    msft = "|".join(t.strip() for t in rows[1].text if t.strip())
    assert msft == "MSFT|3|300.15|305|915.00|9.40|14.55|0.00"

    [order] = [r for r in page.find("tr", within="open-orders") if r.attrs.get("data-row")]
    assert "250" in order.text and "limit" in order.text

    meters = {
        m.attrs["data-limit"]: float(m.attrs["value"])
        for m in page.find("meter", within="risk-limits")
    }
    uses = {u["limit"]: u for u in expected["risk"]["utilisation"] if u["ratio"] is not None}
    assert meters.keys() == uses.keys()
    for name, use in uses.items():
        assert meters[name] == pytest.approx(min(float(use["ratio"]), 1.0))
    assert meters["max_open_orders"] == pytest.approx(0.1)

    assert "".join(page.by_id("pnl-realized").text) == expected["pnl"]["realized"] == "9.40"
    assert "".join(page.by_id("kill-switch").text) == "Trading active"


def test_the_page_refreshed_through_its_data_route_with_its_key(dom: Rendered) -> None:
    page, _ = dom
    body = page.elements[[e.tag for e in page.elements].index("body")]
    assert int(body.attrs["data-fetched"]) >= 1
    assert int(body.attrs["data-rendered"]) >= 2  # the embedded data, then the fetched
    status = page.by_id("status")
    assert "failed" not in status.attrs.get("class", "")
    assert "".join(status.text).startswith("Data as of")


def page_requests(net_log: Path, origin: str) -> list[str]:
    """The URL of every request the page made, from Chromium's network log: the page
    itself, and what anything in it asked for (its origin as initiator)."""
    log = json.loads(net_log.read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start:
            continue
        if params.get("initiator") == origin or params.get("request_type") == "main frame":
            urls.append(params["url"])
    return urls


def test_the_page_asks_nothing_of_any_other_host(dom: Rendered, desk: Desk) -> None:
    _, net_log = dom
    origin = desk.server.url.rstrip("/")
    urls = page_requests(net_log, origin)
    paths = {urlsplit(u).path for u in urls}
    # The log does hold the page's own requests, so an empty check cannot pass.
    assert {"/api/dashboard", "/api/dashboard/data"} <= paths
    assert {urlsplit(u).hostname for u in urls} == {"127.0.0.1"}
    served = desk.http("GET", "dashboard").text
    assert not re.search(r"https?://", served)


# -- the screenshot ---------------------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, compressed = 8, bytearray()
    width = height = channels = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunk = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            compressed += chunk
    raw = zlib.decompress(bytes(compressed))
    stride = width * channels
    prior = bytearray(stride)
    rows = []
    for y in range(height):
        offset = y * (stride + 1)
        method = raw[offset]
        line = bytearray(raw[offset + 1 : offset + 1 + stride])
        if method == 1:  # sub: plus the byte one pixel to the left
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif method == 2:  # up: plus the byte above
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prior, strict=True))
        elif method == 3:  # average of left and above
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prior[i]) >> 1)) & 0xFF
        elif method == 4:  # Paeth: whichever of left, above, above-left is nearest a guess
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                up = prior[i]
                corner = prior[i - channels] if i >= channels else 0
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                nearest = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + nearest) & 0xFF
        rgb = bytearray(width * 3)
        for channel in range(3):
            rgb[channel::3] = line[channel::channels]
        rows.append(bytes(rgb))
        prior = line
    return width, height, rows


def test_the_screenshot_shows_the_charts(desk: Desk, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    chromium(
        tmp_path / "profile",
        "--virtual-time-budget=3000",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={shot}",
        desk.url(f"dashboard?code={FUNCTION_KEY}"),
    )
    assert shot.is_file() and shot.stat().st_size > 20_000
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    counts: Counter[bytes] = Counter()
    for row in rows:
        counts.update(row[x : x + 3] for x in range(0, len(row), 3))
    assert len(counts) > 50, "the screenshot is (nearly) one colour"

    def near(colour: tuple[int, int, int]) -> int:
        return sum(
            n
            for p, n in counts.items()
            if max(abs(a - b) for a, b in zip(p, colour, strict=True)) <= 8
        )

    # Lines two pixels wide across most of a chart, and bars a few pixels high at least.
    assert near(SERIES) > 400, "no chart series was painted"
    assert near(COST) > 200, "no slippage bar that cost money was painted"
    assert near(GAIN) > 200, "no slippage bar that made money was painted"
