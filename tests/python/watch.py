"""The continuous validator behind `workload_client.py watch`.

It holds what a workload holds (the X.509 context stream, the JWT bundle stream) and, every
`interval`, validates every X.509-SVID it holds against the bundle it holds at that moment;
every `jwt_interval` it fetches a JWT-SVID and validates it with the JWT bundles it holds.
Each failure is recorded with its time and reason. It runs until SIGTERM/SIGINT, the stop
file exists, or `max_secs` pass, then returns a summary.
"""

import datetime
import json
import os
import signal
import threading
import time

from cryptography import x509
from spiffe import JwtSvid

from svid_check import check_chain, key_id


class Watch:
    def __init__(self, client, audience, bundle_override=None):
        self.client = client
        self.audience = audience
        # Roots to validate against instead of the held bundle (the negative control).
        self.override = bundle_override
        self.lock = threading.Lock()
        self.ctx = None
        self.jwt_bundles = None
        self.stop = threading.Event()
        self.failures = []
        self.stream_errors = []
        self.validations = 0
        self.jwt_validations = 0
        self.serials = {}
        self.roots = []
        self.kids = []
        # Key ids of each held SVID's direct issuer, in order: the tier's CA, rotating.
        self.issuers = []
        # What is held at the last round: the bundle's roots, each SVID's chain keys, the
        # JWT bundle's kids (the state a rotation must end in, not its history).
        self.held_roots = []
        self.held_chains = {}
        self.held_kids = []

    def _now(self):
        return datetime.datetime.now(datetime.timezone.utc)

    def _fail(self, what, reason, svid=None):
        self.failures.append(
            {
                "at_ms": int(time.time() * 1000),
                "what": what,
                "spiffe_id": str(svid.spiffe_id) if svid is not None else "",
                "serial": format(svid.leaf.serial_number, "x") if svid is not None else "",
                "reason": reason,
            }
        )

    def _on_x509(self, ctx):
        with self.lock:
            self.ctx = ctx

    def _on_jwt_bundles(self, bundles):
        with self.lock:
            self.jwt_bundles = bundles

    def _on_error(self, e):
        self.stream_errors.append({"at_ms": int(time.time() * 1000), "error": str(e)})

    def validate_x509(self):
        with self.lock:
            ctx = self.ctx
        if ctx is None:
            return
        now = self._now()
        held_roots, held_chains = [], {}
        for svid in ctx.x509_svids:
            td = svid.spiffe_id.trust_domain
            if self.override is not None:
                roots = self.override
            else:
                bundle = ctx.x509_bundle_set.get_bundle_for_trust_domain(td)
                roots = list(bundle.x509_authorities) if bundle else []
            for r in roots:
                if key_id(r) not in self.roots:
                    self.roots.append(key_id(r))
                if key_id(r) not in held_roots:
                    held_roots.append(key_id(r))
            held_chains[str(svid.spiffe_id)] = chain_key_ids(list(svid.cert_chain))
            ids = self.serials.setdefault(str(svid.spiffe_id), [])
            serial = format(svid.leaf.serial_number, "x")
            if serial not in ids:
                ids.append(serial)
            chain = list(svid.cert_chain)
            issuer = key_id(chain[1]) if len(chain) > 1 else "(root-signed) " + self._aki(chain[0])
            if issuer not in self.issuers:
                self.issuers.append(issuer)
            reason = check_chain(list(svid.cert_chain), roots, now)
            self.validations += 1
            if reason is not None:
                self._fail("x509", reason, svid)
        self.held_roots, self.held_chains = held_roots, held_chains

    @staticmethod
    def _ski(cert):
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            return ext.value.digest.hex()
        except x509.ExtensionNotFound:
            return ""

    @staticmethod
    def _aki(cert):
        try:
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
            return (aki.value.key_identifier or b"").hex()
        except x509.ExtensionNotFound:
            return ""

    def validate_jwt(self):
        try:
            svid = self.client.fetch_jwt_svid(audience={self.audience})
        except Exception as e:  # noqa: BLE001
            self._fail("jwt", "no JWT-SVID: " + str(e))
            return
        with self.lock:
            bundles = self.jwt_bundles
        self.jwt_validations += 1
        if bundles is None:
            self._fail("jwt", "no JWT bundle held")
            return
        bundle = bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        if bundle is None:
            self._fail("jwt", "no JWT bundle for " + str(svid.spiffe_id.trust_domain))
            return
        for kid in bundle.jwt_authorities.keys():
            if kid not in self.kids:
                self.kids.append(kid)
        self.held_kids = list(bundle.jwt_authorities.keys())
        try:
            JwtSvid.parse_and_validate(svid.token, bundle, {self.audience})
        except Exception as e:  # noqa: BLE001
            self._fail("jwt", "JWT-SVID does not validate: " + str(e))

    def summary(self, started):
        return {
            "validations": self.validations,
            "jwt_validations": self.jwt_validations,
            "failures": list(self.failures),
            "stream_errors": list(self.stream_errors),
            "serials": {k: list(v) for k, v in self.serials.items()},
            "issuers": list(self.issuers),
            "bundle_roots": list(self.roots),
            "jwt_kids": list(self.kids),
            "held_roots": list(self.held_roots),
            "held_chains": {k: list(v) for k, v in self.held_chains.items()},
            "held_kids": list(self.held_kids),
            "secs": round(time.monotonic() - started, 3),
        }

    def run(self, interval, jwt_interval, stop_file, max_secs, ready_file=None, status_file=None):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        x509_handle = self.client.stream_x509_contexts(self._on_x509, self._on_error)
        jwt_handle = (
            self.client.stream_jwt_bundles(self._on_jwt_bundles, self._on_error)
            if jwt_interval > 0
            else None
        )
        started = time.monotonic()
        next_jwt = started
        next_status = started
        try:
            while not self.stop.is_set():
                if stop_file and os.path.exists(stop_file):
                    break
                if time.monotonic() - started > max_secs:
                    self._fail("watch", "ran past --max-secs without being stopped")
                    break
                self.validate_x509()
                if ready_file and self.validations > 0 and not os.path.exists(ready_file):
                    with open(ready_file, "w") as f:
                        f.write("validating\n")
                if jwt_interval > 0 and time.monotonic() >= next_jwt and self.jwt_bundles:
                    self.validate_jwt()
                    next_jwt = time.monotonic() + jwt_interval
                if status_file and time.monotonic() >= next_status:
                    tmp = status_file + ".tmp"
                    with open(tmp, "w") as f:
                        json.dump(self.summary(started), f)
                    os.replace(tmp, status_file)
                    next_status = time.monotonic() + 0.5
                self.stop.wait(interval)
        finally:
            x509_handle.cancel()
            if jwt_handle is not None:
                jwt_handle.cancel()
        if self.validations == 0:
            self._fail("watch", "never received an X.509 context")
        return self.summary(started)


def chain_key_ids(chain):
    """The keys a chain depends on, like `trustdeck_spiffe::x509::chain_key_ids`: every
    certificate's authority key id and every non-leaf's subject key id, each once, in order."""
    out = []
    for i, cert in enumerate(chain):
        for k in ([Watch._ski(cert)] if i > 0 else []) + [Watch._aki(cert)]:
            if k and k not in out:
                out.append(k)
    return out


def load_roots(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())
