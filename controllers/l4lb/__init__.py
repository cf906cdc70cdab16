"""An L4 load balancer in the OpenFlow fabric (S4): VIP -> real server, session pinned in the switch."""
