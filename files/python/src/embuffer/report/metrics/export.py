"""The two ways the journal metrics leave the host: an HTTP endpoint and a node_exporter
textfile. Both share one collector, so a long-running exporter folds each event in once."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.process_collector import ProcessCollector

from embuffer.config import Config
from embuffer.report.metrics.collector import JournalCollector

log = logging.getLogger("embuffer.metrics")
DEFAULT_LISTEN = "127.0.0.1:9814"
DEFAULT_TEXTFILE_INTERVAL_SECONDS = 15.0


class ExportSetupError(ValueError):
    """A listen address or textfile path the exporter cannot (or must not) use."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """'127.0.0.1:9814', '[::1]:9814', 'localhost:9814' or ':9814' (all interfaces)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ExportSetupError(f"listen address {text!r} must be HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return ListenAddress(host or "0.0.0.0", int(port))


def is_loopback(host: str) -> bool:
    """True when every address `host` stands for is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%")[0]).is_loopback for address in addresses
    )


def check_listen(text: str, *, allow_public: bool) -> ListenAddress:
    address = parse_listen(text)
    if not allow_public and not is_loopback(address.host):
        raise ExportSetupError(
            f"listen address {text!r} is reachable from other hosts; the metrics name sessions "
            "and cameras, so pass --allow-public (and firewall the port) if that is intended, "
            f"or use the default {DEFAULT_LISTEN}"
        )
    return address


def registry_for(config: Config, *, process: bool) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JournalCollector(config))
    if process:
        # exporter's own CPU/memory: only meaningful for the long-running endpoint
        ProcessCollector(registry=registry)
    return registry


def serve(config: Config, address: ListenAddress, stop: threading.Event) -> None:
    """Serve /metrics until `stop` is set."""
    registry = registry_for(config, process=True)
    # Fold the whole journal in before listening: on a large journal the first pass takes
    # seconds, which must not make Prometheus's first scrape time out.
    generate_latest(registry)
    server, thread = start_http_server(address.port, addr=address.host, registry=registry)
    log.info("serving metrics of %s on http://%s/metrics", config.journal, address)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Write next to the target and rename over it: node_exporter never reads half a file.
    The temporary name does not end in .prom, so the collector never picks it up either."""
    payload = generate_latest(registry)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            os.fchmod(handle.fileno(), 0o644)  # node_exporter runs as another user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_textfile(path: Path) -> None:
    if path.suffix != ".prom":
        raise ExportSetupError(f"textfile {path} must end in .prom (node_exporter reads no other)")
    if not path.parent.is_dir():
        raise ExportSetupError(f"textfile folder {path.parent} does not exist")


def textfile_loop(config: Config, path: Path, interval: float, stop: threading.Event) -> None:
    registry = registry_for(config, process=False)
    log.info("writing metrics of %s to %s every %.0f s", config.journal, path, interval)
    while True:
        try:
            write_textfile(path, registry)
        except OSError as error:
            log.error("metrics textfile %s not written: %s", path, error)
        except Exception as error:  # noqa: BLE001 - the next interval tries again
            log.error("metrics textfile %s not written: %r", path, error, exc_info=error)
        if stop.wait(interval):
            return
