"""Chain checks for the continuous validator (`workload_client.py watch`).

An X.509-SVID is valid at a moment when its chain (leaf first) verifies, signature by signature
and window by window, up to one of the bundle's X.509 authorities at that moment. The check is
`cryptography`'s own path builder (`cryptography.x509.verification`, client profile: the leaf's
URI SAN and clientAuth EKU, CA constraints of every intermediate), so a chain the validator
accepts is one a TLS peer would accept.
"""

import datetime

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError


def check_chain(chain, roots, at):
    """None when `chain` (leaf first) verifies up to one of `roots` at `at`; else the reason."""
    if not chain:
        return "no certificate in the SVID"
    if not roots:
        return "no X.509 authority in the bundle"
    try:
        verifier = PolicyBuilder().store(Store(list(roots))).time(at).build_client_verifier()
        verified = verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as e:
        return "chain does not verify: " + str(e)
    except ValueError as e:  # a malformed certificate or an empty store
        return "unusable chain or bundle: " + str(e)
    if not any(
        isinstance(s, x509.UniformResourceIdentifier) and s.value.startswith("spiffe://")
        for s in verified.subjects or []
    ):
        return "the leaf names no SPIFFE ID"
    return None


def key_id(cert):
    """The subject key id (hex) of a certificate, or its serial when it has none."""
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return ski.value.digest.hex()
    except x509.ExtensionNotFound:
        return format(cert.serial_number, "x")


def _cert(subject, key, issuer, issuer_key, ca, not_before, not_after, uri=None):
    from cryptography.hazmat.primitives import hashes

    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        b = b.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        ).add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    if uri:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
    return b.sign(issuer_key, hashes.SHA256())


def self_test():
    """Proves the check can fail: a chain against a foreign root, an expired leaf, a leaf
    signed by the wrong intermediate, and (as the control) the good chain. Returns a dict of
    case name to the check's answer (None = valid)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    hour = datetime.timedelta(hours=1)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("root", "other", "mid", "leaf")}
    root = _cert(name("root"), keys["root"], name("root"), keys["root"], True, now - hour, now + hour)
    other = _cert(
        name("other"), keys["other"], name("other"), keys["other"], True, now - hour, now + hour
    )
    mid = _cert(name("mid"), keys["mid"], name("root"), keys["root"], True, now - hour, now + hour)
    spiffe = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIFFE")])
    leaf = _cert(
        spiffe, keys["leaf"], name("mid"), keys["mid"], False, now - hour, now + hour,
        uri="spiffe://example.org/w",
    )
    expired = _cert(
        spiffe, keys["leaf"], name("mid"), keys["mid"], False,
        now - 2 * hour, now - hour, uri="spiffe://example.org/w",
    )
    # Names the right issuer but signed by another key.
    forged = _cert(
        spiffe, keys["leaf"], name("mid"), keys["other"], False, now - hour, now + hour,
        uri="spiffe://example.org/w",
    )
    return {
        "good": check_chain([leaf, mid], [root], now),
        "foreign_bundle": check_chain([leaf, mid], [other], now),
        "expired_leaf": check_chain([expired, mid], [root], now),
        "forged_signature": check_chain([forged, mid], [root], now),
        "empty_bundle": check_chain([leaf, mid], [], now),
    }
