"""An FTP server (vsftpd) as typed data; `problems()` lists every problem with its place."""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import checks


@dataclass(frozen=True)
class FtpServerConfig:
    """An FTP server (vsftpd): anonymous downloads from `root`, the control port, the
    passive range it announces, and how long it waits for a data connection (s).

    `ipv6`: listen on IPv6 as well. vsftpd has one listening socket: `listen=YES` binds it
    to IPv4 only; `listen_ipv6=YES` binds it to [::], which on Linux takes IPv4 too (as
    IPv4-mapped addresses, ::ffff:a.b.c.d, in its log); the two may not both be on."""

    root: str
    port: int = 21
    pasv_min: int = 30000
    pasv_max: int = 30009
    data_timeout: int = 3  # connect (active) or accept (passive) a data connection
    idle_timeout: int = 300  # a control session with no command
    ipv6: bool = False  # listen on [::]: both families (see above)

    def problems(self) -> list[str]:
        problems: list[str] = []
        for key in ("port", "pasv_min", "pasv_max"):
            checks.port(getattr(self, key), "ftp_server", problems, key)
        if (
            isinstance(self.pasv_min, int)
            and isinstance(self.pasv_max, int)
            and self.pasv_max < self.pasv_min
        ):
            problems.append(f"ftp_server: passive range {self.pasv_min}-{self.pasv_max} is reversed")
        for key in ("data_timeout", "idle_timeout"):
            checks.timeout(getattr(self, key), f"ftp_server.{key}", problems)
        if not isinstance(self.ipv6, bool):
            problems.append(f"ftp_server.ipv6: {self.ipv6!r} is not true or false")
        return problems


def ftp_server_problems(config: FtpServerConfig) -> list[str]:
    """Every problem with an FTP server (kept for callers: `config.problems()`)."""
    return config.problems()
