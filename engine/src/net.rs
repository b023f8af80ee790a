//! Sockets: listeners with `SO_REUSEPORT` (one per core, so the kernel spreads
//! connections), outbound sockets, socket options, and the system limits around them
//! (`net.core.somaxconn`, `RLIMIT_NOFILE`).

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::config::NetConfig;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `v` is a live c_int and its size is passed; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A `sockaddr_storage` holding `addr`, and its length.
pub(crate) fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The peer address of a connected socket.
pub(crate) fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is valid; getpeername writes at most `len` bytes.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` and `len` are live and writable for the call.
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        from_sockaddr(&ss)
    } else {
        None
    }
}

/// The local address of a bound socket.
pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is valid; getsockname writes at most `len` bytes.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` and `len` are live and writable for the call.
    cvt(unsafe {
        libc::getsockname(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    from_sockaddr(&ss).ok_or_else(|| io::Error::other("unknown address family"))
}

fn socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let domain = match addr.ip() {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call; the result is checked before it is owned.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Applies `net`'s options to a socket.
pub(crate) fn apply_options(fd: RawFd, net: &NetConfig) -> io::Result<()> {
    if net.nodelay {
        set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    }
    if let Some((idle, interval, count)) = net.keepalive {
        set_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
        set_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPIDLE,
            idle.as_secs().max(1) as i32,
        )?;
        set_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            interval.as_secs().max(1) as i32,
        )?;
        set_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, count as i32)?;
    }
    if let Some(n) = net.recv_buffer {
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, n as i32)?;
    }
    if let Some(n) = net.send_buffer {
        set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, n as i32)?;
    }
    Ok(())
}

/// A listening socket on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, so every core can
/// bind the same address and the kernel spreads connections across them. Accepted
/// sockets inherit its options.
pub(crate) fn listener(addr: SocketAddr, net: &NetConfig) -> io::Result<OwnedFd> {
    let fd = socket(&addr)?;
    let raw = fd.as_raw_fd();
    set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    apply_options(raw, net)?;
    let (ss, len) = to_sockaddr(addr);
    // SAFETY: `ss` holds a valid address of length `len`.
    cvt(unsafe { libc::bind(raw, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
    // SAFETY: plain listen(2) on a bound socket we own.
    cvt(unsafe { libc::listen(raw, net.backlog.min(i32::MAX as u32) as i32) })?;
    Ok(fd)
}

/// Binds a socket with `SO_REUSEPORT` to `addr` without listening, and returns it with the
/// address it got. Every core listens with `SO_REUSEPORT`, so a port-0 address would give
/// each core a different port: reserve one first, listen on the address returned, and
/// hold the socket until every core listens. It never accepts connections.
pub fn reserve_port(addr: SocketAddr) -> io::Result<(OwnedFd, SocketAddr)> {
    let fd = socket(&addr)?;
    set_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    let (ss, len) = to_sockaddr(addr);
    // SAFETY: `ss` holds a valid address of length `len`.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    })?;
    let got = local_addr(fd.as_raw_fd())?;
    Ok((fd, got))
}

/// A fresh socket for an outbound connection to `addr`, with `net`'s options.
pub(crate) fn outbound(addr: &SocketAddr, net: &NetConfig) -> io::Result<OwnedFd> {
    let fd = socket(addr)?;
    apply_options(fd.as_raw_fd(), net)?;
    Ok(fd)
}

/// `net.core.somaxconn`, which caps every listen backlog.
pub(crate) fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns `(soft, hard)` after.
pub(crate) fn raise_nofile() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a live, writable rlimit.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) })?;
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: `want` is a valid rlimit; raising the soft limit up to the hard one is
        // always permitted.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) })?;
        r = want;
    }
    Ok((r.rlim_cur, r.rlim_max))
}
