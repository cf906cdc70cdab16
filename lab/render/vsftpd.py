"""FtpServerConfig -> vsftpd.conf text. Pure: golden-file tested.

vsftpd runs in the foreground (`background=NO`), owned by the lab and ended by PID; it logs
every command and reply (`log_ftp_protocol`) and every transfer to one file, which is the
server's side of the evidence (what PORT it received after any ALG, which data port it
announced, what it sent).

Over IPv6 (`ipv6`), vsftpd answers EPRT and EPSV (RFC 2428); PORT and PASV carry four
IPv4 octets: over an IPv6 control session it refuses a PORT (no IPv4 address is the
session's peer) and answers PASV with 227 naming 0,0,0,0 (measured: testcases/test_s3_ipv6.py).
"""

from __future__ import annotations

from lab.config import FtpServerConfig


def render_vsftpd(config: FtpServerConfig, log_file: str, empty_dir: str) -> str:
    """The whole vsftpd.conf; `empty_dir`: an empty directory vsftpd may chroot into."""
    options = {
        # One listening socket: IPv4 only, or [::] for both families (vsftpd refuses both on).
        "listen": "NO" if config.ipv6 else "YES",
        "listen_ipv6": "YES" if config.ipv6 else "NO",
        "listen_port": config.port,
        "background": "NO",
        # Anonymous downloads only, from the lab's own directory.
        "anonymous_enable": "YES",
        "local_enable": "NO",
        "no_anon_password": "YES",
        "anon_root": config.root,
        "write_enable": "NO",
        # Both modes: active from port 20, passive in the configured range. A PORT naming
        # another address than the control session's is refused (vsftpd's default).
        "port_enable": "YES",
        "connect_from_port_20": "YES",
        "ftp_data_port": 20,
        "port_promiscuous": "NO",
        "pasv_enable": "YES",
        "pasv_min_port": config.pasv_min,
        "pasv_max_port": config.pasv_max,
        "connect_timeout": config.data_timeout,
        "accept_timeout": config.data_timeout,
        "data_connection_timeout": 300,
        "idle_session_timeout": config.idle_timeout,
        # In a lab namespace: no network or process isolation of its own, no seccomp.
        "isolate": "NO",
        "isolate_network": "NO",
        "seccomp_sandbox": "NO",
        "secure_chroot_dir": empty_dir,
        # Every command, reply and transfer in one log.
        "xferlog_enable": "YES",
        "xferlog_std_format": "NO",
        "log_ftp_protocol": "YES",
        "vsftpd_log_file": log_file,
        "syslog_enable": "NO",
        "dual_log_enable": "NO",
    }
    return "".join(f"{key}={value}\n" for key, value in options.items())
