"""An FTP server (vsftpd) as typed data; `problems()` lists every problem with its place."""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import checks


@dataclass(frozen=True)
class FtpServerConfig:
    """An FTP server (vsftpd): anonymous downloads from `root`, the control port, the
    passive range it announces, and how long it waits for a data connection (s)."""

    root: str
    port: int = 21
    pasv_min: int = 30000
    pasv_max: int = 30009
    data_timeout: int = 3  # connect (active) or accept (passive) a data connection
    idle_timeout: int = 300  # a control session with no command

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
        return problems


def ftp_server_problems(config: FtpServerConfig) -> list[str]:
    """Every problem with an FTP server (kept for callers: `config.problems()`)."""
    return config.problems()
