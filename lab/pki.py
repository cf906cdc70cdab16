"""The lab's own certificate authority (trustme): a CA per run, and certificates it
issues for lab addresses, so clients verify the ADC's TLS as they would a real one."""

from __future__ import annotations

from pathlib import Path


class LabCa:
    """A CA whose certificate is `ca_path`; `issue` writes a key and certificate chain
    (one PEM, as haproxy and nginx read it) for names and addresses."""

    def __init__(self, folder: Path):
        import trustme

        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="sessionlab lab CA")
        self.ca_path = folder / "lab-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))

    def issue(self, name: str, *identities: str) -> Path:
        """A certificate for `identities` (IP addresses or DNS names), saved as `<name>.pem`."""
        cert = self._ca.issue_cert(*identities)
        path = self.folder / f"{name}.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(path))
        path.chmod(0o600)
        return path
