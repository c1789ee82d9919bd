"""Device replies are untrusted input: DOCTYPEs, nesting depth, size limits, framing (pure, no device)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import yaml
from lxml import etree

from drivers.base import Capabilities, DeviceProfile, Timeouts
from drivers.netconf import rpc, xmlconfig, xmlsafe
from drivers.netconf.driver import NetconfSettings, translate
from drivers.netconf.framing import EOM, Decoder, FramingError, MessageTooLarge, encode_chunked, encode_eom
from drivers.netconf.session import NC_NS, NetconfSession, ReplyRefused, SessionOptions
from gateway import errors as e
from gateway.api.status import map_error

PASSWD = Path("/etc/passwd")
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><data><x>&lol9;</x></data></rpc-reply>"""
XXE = (b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
       b'<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><data><x>&xxe;</x></data>'
       b'</rpc-reply>')
EXTERNAL_DTD = (b'<!DOCTYPE rpc-reply SYSTEM "file:///etc/passwd">'
                b'<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><data/></rpc-reply>')
HIDDEN_AFTER_PROLOG = (b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- a comment -->\n<?pi x?>\n'
                       b'<!DOCTYPE r [<!ENTITY e "rpc-error">]><rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                       b'&e;<ok/></rpc-reply>')
HOSTILE = {"billion-laughs": BILLION_LAUGHS, "xxe-file": XXE, "external-dtd": EXTERNAL_DTD,
           "after-prolog": HIDDEN_AFTER_PROLOG}


def nested(levels: int, *, root: str = "rpc-reply") -> bytes:
    """A reply whose deepest element lies ``levels`` levels below the root element."""
    inner = "<n>" * (levels - 1) + "</n>" * (levels - 1)
    return f'<{root} xmlns="{NC_NS}" message-id="1"><data>{inner}</data></{root}>'.encode()


def _passwd_lines() -> list[str]:
    return [line for line in PASSWD.read_text().splitlines() if line.strip()] if PASSWD.exists() else []


# -- DOCTYPE ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("want_data", [True, False])
def test_doctype_replies_are_refused(name: str, want_data: bool) -> None:
    with pytest.raises(xmlsafe.UnsafeXmlError, match="DOCTYPE") as info:
        rpc.parse_reply(HOSTILE[name], want_data=want_data)  # an ok-looking reply is parsed too
    text = str(info.value) + repr(info.value.__cause__)
    assert not any(line in text for line in _passwd_lines())
    err = translate(info.value, device="nc1", phase=e.Phase.VERIFY)
    assert type(err) is e.DeviceReplyError and not err.retryable and "nc1" in str(err)
    assert map_error(err).code.name == "ABORTED"


def test_file_content_never_appears_even_if_the_prolog_scan_missed_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xmlsafe, "_doctype_in_prolog", lambda data: False)  # the backstop alone
    for data in (XXE, EXTERNAL_DTD):
        with pytest.raises(xmlsafe.UnsafeXmlError, match="DOCTYPE"):
            rpc.parse_reply(data, want_data=True)
    # and what lxml itself does with our parser: nothing resolved, nothing read
    root = etree.fromstring(XXE, xmlsafe.make_parser())
    serialized = etree.tostring(root).decode()
    assert not any(line in serialized for line in _passwd_lines())
    assert "&xxe;" in serialized


def test_billion_laughs_is_refused_before_parsing_and_by_libxml2_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xmlsafe, "_doctype_in_prolog", lambda data: False)
    with pytest.raises(xmlsafe.UnsafeXmlError):  # amplification limit (huge_tree off) or the DOCTYPE check
        xmlsafe.parse(BILLION_LAUGHS, xmlsafe.make_parser())


def test_doctype_text_inside_the_document_is_not_a_doctype() -> None:
    data = (b'<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><data>'
            b'<x><![CDATA[<!DOCTYPE x>]]></x><!-- <!DOCTYPE y> --><y>&lt;!DOCTYPE z&gt;</y></data></rpc-reply>')
    reply = rpc.parse_reply(data, want_data=True)
    assert reply.ok and reply.data is not None and reply.data.findtext(f"{{{NC_NS}}}x") == "<!DOCTYPE x>"


def test_parsers_have_the_safe_settings() -> None:
    from drivers.netconf import session

    for parser in (session._PARSER, rpc._PARSER, xmlconfig._parser()):  # noqa: SLF001
        assert type(parser) is etree.XMLParser
    src = "".join(Path(m.__file__).read_text() for m in (session, rpc, xmlconfig))
    assert "huge_tree=True" not in src and "etree.XMLParser(" not in src  # one factory: xmlsafe.make_parser


def test_configuration_xml_with_a_doctype_or_too_deep_is_a_config_error() -> None:
    with pytest.raises(xmlconfig.ConfigXmlError, match="DOCTYPE"):
        xmlconfig.parse('<!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]><config>&x;</config>')
    with pytest.raises(xmlconfig.ConfigXmlError, match="levels"):
        xmlconfig.parse(nested(xmlsafe.MAX_DEPTH + 1, root="config"))


# -- depth --------------------------------------------------------------------------------------
def test_depth_exactly_at_the_limit_is_accepted_and_walks_stay_bounded() -> None:
    reply = rpc.parse_reply(nested(xmlsafe.MAX_DEPTH), want_data=True)
    assert reply.ok and reply.data is not None
    lk = xmlconfig.ListKeys({})
    text = xmlconfig.canonical(reply.data, lk)  # the recursive walks, at the deepest allowed reply
    assert text.count("<n>") == xmlsafe.MAX_DEPTH - 1  # rpc-reply/data, then the <n> levels
    nodes, leaves = xmlconfig.index(reply.data, lk)
    assert len(nodes) == xmlsafe.MAX_DEPTH - 1 and len(leaves) == 1


@pytest.mark.parametrize("levels", [xmlsafe.MAX_DEPTH + 1, 255, 256, 257, 1000, 10_000])
def test_deeper_replies_are_refused_cleanly(levels: int) -> None:
    try:
        rpc.parse_reply(nested(levels), want_data=True)
    except RecursionError:  # pragma: no cover - the point of the test
        pytest.fail("RecursionError from a reply")
    except xmlsafe.UnsafeXmlError as exc:
        err = translate(exc, device="nc1", phase=e.Phase.SNAPSHOT)
        assert type(err) is e.DeviceReplyError and not err.retryable
    else:
        pytest.fail(f"a reply {levels} levels deep was accepted")


# -- the session ----------------------------------------------------------------------------------
class _Transport:
    closing = False

    def __init__(self) -> None:
        self.aborted = False
        self.written: list[bytes] = []

    def abort(self) -> None:
        self.aborted = True

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _session(*, max_reply_bytes: int = 1 << 20, chunked: bool = False) -> tuple[NetconfSession, _Transport]:
    s = NetconfSession(options=SessionOptions(max_reply_bytes=max_reply_bytes))
    s._transport = _Transport()  # type: ignore[assignment]  # noqa: SLF001
    s._hello_done = True  # noqa: SLF001
    if chunked:
        s.chunked = True
        s._decoder.use_chunked()  # noqa: SLF001
    return s, s._transport  # type: ignore[return-value]  # noqa: SLF001


def _waiter(s: NetconfSession, msg_id: str = "1") -> asyncio.Future[bytes]:
    fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    s._waiters[msg_id] = fut  # noqa: SLF001
    return fut


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("levels", [xmlsafe.MAX_DEPTH, xmlsafe.MAX_DEPTH + 1, 10_000])
async def test_deep_reply_through_the_session_and_parse_reply(chunked: bool, levels: int) -> None:
    s, transport = _session(max_reply_bytes=1 << 20, chunked=chunked)
    fut = _waiter(s)
    raw = nested(levels)
    wire = encode_chunked(raw) if chunked else encode_eom(raw)
    for i in range(0, len(wire), 97):  # many small reads
        s._on_data(wire[i : i + 97])  # noqa: SLF001
    assert fut.done() and fut.result() == raw and not transport.aborted  # the session does not parse replies
    if levels <= xmlsafe.MAX_DEPTH:
        assert rpc.parse_reply(fut.result(), want_data=True).ok
    else:
        with pytest.raises(xmlsafe.UnsafeXmlError):
            rpc.parse_reply(fut.result(), want_data=True)


async def test_deep_or_doctype_hello_aborts_the_session_with_a_refusal() -> None:
    for hello in (nested(10_000, root="hello"), nested(xmlsafe.MAX_DEPTH + 1, root="hello"),
                  b'<!DOCTYPE hello SYSTEM "file:///etc/passwd">' + nested(2, root="hello")):
        s = NetconfSession(options=SessionOptions())
        transport = _Transport()
        s._transport = transport  # type: ignore[assignment]  # noqa: SLF001
        s._hello = asyncio.get_running_loop().create_future()  # noqa: SLF001
        s._on_data(encode_eom(hello))  # noqa: SLF001
        assert transport.aborted and not s.is_open
        with pytest.raises(ReplyRefused) as info:
            await s._hello  # noqa: SLF001
        err = translate(info.value, device="nc1", phase=e.Phase.CONNECT)
        assert type(err) is e.DeviceReplyError and not err.retryable


@pytest.mark.parametrize("chunked", [False, True])
async def test_reply_over_max_reply_bytes_aborts_the_session(chunked: bool) -> None:
    s, transport = _session(max_reply_bytes=1000, chunked=chunked)
    first, second = _waiter(s, "1"), _waiter(s, "2")
    raw = b'<rpc-reply xmlns="' + NC_NS.encode() + b'" message-id="1"><data>' + b"x" * 5000 + b"</data></rpc-reply>"
    wire = encode_chunked(raw) if chunked else encode_eom(raw)
    for i in range(0, len(wire), 256):
        s._on_data(wire[i : i + 256])  # noqa: SLF001
        if transport.aborted:
            break
    assert transport.aborted and not s.is_open
    for fut in (first, second):  # every pending request gets the refusal, not "session closed"
        with pytest.raises(ReplyRefused) as info:
            await fut
        assert info.value.limit_bytes == 1000
    err = translate(info.value, device="nc7", phase=e.Phase.SNAPSHOT)
    assert type(err) is e.DeviceReplyError and not err.retryable
    text = str(err)
    assert "1000 bytes" in text and "max_reply_bytes" in text and "device profile" in text and "nc7" in text


async def test_reply_just_under_the_limit_is_delivered() -> None:
    s, transport = _session(max_reply_bytes=1000)
    fut = _waiter(s)
    raw = b'<rpc-reply message-id="1">' + b"x" * (1000 - 38) + b"</rpc-reply>"
    assert len(raw) == 1000
    s._on_data(encode_eom(raw))  # noqa: SLF001
    assert fut.result() == raw and not transport.aborted


# -- the profile setting --------------------------------------------------------------------------
def _profile(**settings: object) -> DeviceProfile:
    d = yaml.safe_load((Path(__file__).parents[2] / "device_profiles" / "netconfd.yaml").read_text())
    return DeviceProfile(platform="netconfd", driver="netconf", capabilities=Capabilities(**d["capabilities"]),
                         timeouts=Timeouts(**d["timeouts"]), quirks=d["quirks"], settings={**d["settings"], **settings})


def test_max_reply_bytes_comes_from_the_profile() -> None:
    assert NetconfSettings.from_profile(_profile()).max_reply_bytes == 64 * 1024 * 1024
    assert NetconfSettings.from_profile(_profile(max_reply_bytes=4096)).max_reply_bytes == 4096
    for bad in (0, -1, "64M", 1.5, True):
        with pytest.raises(e.ConfigurationError, match="max_reply_bytes"):
            NetconfSettings.from_profile(_profile(max_reply_bytes=bad))


# -- framing --------------------------------------------------------------------------------------
MESSAGES = [b"<hello/>", b"<rpc-reply message-id='1'><ok/></rpc-reply>", b"<a>" + b"]]>]]" * 300 + b"</a>",
            b"<b>" + bytes(range(32, 127)) * 100 + b"</b>"]


@pytest.mark.parametrize("framing", ["eom", "chunked"])
@pytest.mark.parametrize("seed", range(20))
def test_random_fragmentation_decodes_every_message(framing: str, seed: int) -> None:
    rnd = random.Random(seed)
    if framing == "eom":
        stream, dec = b"".join(encode_eom(m) for m in MESSAGES), Decoder()
    else:
        # several chunks per message (7 bytes each), then the end-of-chunks marker
        stream = b"".join(b"".join(b"\n#%d\n%s" % (len(m[i : i + 7]), m[i : i + 7]) for i in range(0, len(m), 7))
                          + b"\n##\n" for m in MESSAGES)
        dec = Decoder(chunked=True)
    out: list[bytes] = []
    i = 0
    while i < len(stream):
        n = rnd.choice([1, 1, 2, 3, 5, 6, 7, 64, 1000])
        out += dec.feed(stream[i : i + n])
        i += n
    assert out == MESSAGES and dec.pending == 0


def test_end_of_message_split_at_every_position() -> None:
    msg = b"<rpc-reply>" + b"]" * 20 + b"]]>]]" + b"</rpc-reply>"
    stream = encode_eom(msg) + encode_eom(b"<second/>")
    for cut in range(1, len(stream)):
        for cut2 in range(cut + 1, min(len(stream), cut + 8)):
            dec = Decoder()
            out = dec.feed(stream[:cut]) + dec.feed(stream[cut:cut2]) + dec.feed(stream[cut2:])
            assert out == [msg, b"<second/>"], (cut, cut2)


def test_eom_search_does_not_rescan_what_it_searched() -> None:
    dec = Decoder()
    dec.feed(b"x" * 10_000 + b"]]>]]")
    assert dec._scan == 10_005 - (len(EOM) - 1)  # noqa: SLF001 - only the possible start of an EOM
    assert dec.feed(b">") == [b"x" * 10_000]
    assert dec._scan == 0  # noqa: SLF001


@pytest.mark.parametrize("chunked", [False, True])
def test_decoder_limit_whole_message_in_one_read(chunked: bool) -> None:
    msg = b"y" * 2000
    wire = encode_chunked(msg) if chunked else encode_eom(msg)
    with pytest.raises(MessageTooLarge) as info:
        Decoder(chunked=chunked, max_message_bytes=1000).feed(wire)
    assert info.value.limit == 1000 and isinstance(info.value, FramingError)
    assert Decoder(chunked=chunked, max_message_bytes=2000).feed(wire) == [msg]


def test_chunk_header_announcing_too_much_is_refused_at_once() -> None:
    dec = Decoder(chunked=True, max_message_bytes=1000)
    assert dec.feed(b"\n#600\n" + b"a" * 600) == []
    with pytest.raises(MessageTooLarge):
        dec.feed(b"\n#500\n")  # 1100 announced: refused before the payload arrives
    with pytest.raises(MessageTooLarge):
        Decoder(chunked=True, max_message_bytes=1000).feed(b"\n#4294967295\n")


def test_many_tiny_chunks_are_counted_without_rescanning() -> None:
    dec = Decoder(chunked=True, max_message_bytes=10_000)
    piece = b"\n#1\nz"
    for _ in range(9_999):
        assert dec.feed(piece) == []
    assert dec.pending == 9_999
    with pytest.raises(MessageTooLarge):
        dec.feed(piece + piece)
