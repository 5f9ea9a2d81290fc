//! Ports for instances. The kernel picks a free one (bind to port 0, then
//! release it so the app can bind it), but until the app binds, the kernel
//! may hand the same port to the next instance: a burst of cold starts could
//! then put two instances on one port, the second failing with "address in
//! use" after its readiness probe had already reached the first. So each port
//! stays booked here for its instance's whole run.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// Enough to step past every booked port; the kernel starts its search at a
/// random place in the ephemeral range, so collisions are rare to begin with.
const ATTEMPTS: usize = 64;

#[derive(Default)]
pub(crate) struct PortBook {
    booked: Mutex<HashSet<u16>>,
}

/// A booked port, released when dropped.
pub(crate) struct PortLease<'a> {
    book: &'a PortBook,
    port: u16,
}

impl PortBook {
    /// A port that is free now and booked by no other instance.
    pub fn lease(&self) -> io::Result<PortLease<'_>> {
        self.lease_from(|| {
            Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port())
        })
    }

    /// [`Self::lease`] with the ports that `free` offers.
    fn lease_from(&self, mut free: impl FnMut() -> io::Result<u16>) -> io::Result<PortLease<'_>> {
        for _ in 0..ATTEMPTS {
            let port = free()?;
            if self.lock().insert(port) {
                return Ok(PortLease { book: self, port });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("the kernel offered only ports booked by other instances ({ATTEMPTS} tries)"),
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u16>> {
        // The set stays consistent even if a holder panicked.
        self.booked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PortLease<'_> {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease<'_> {
    fn drop(&mut self) {
        self.book.lock().remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booked_ports_are_distinct_and_released_on_drop() {
        let book = PortBook::default();
        let leases: Vec<_> = (0..200).map(|_| book.lease().unwrap()).collect();
        let ports: HashSet<u16> = leases.iter().map(PortLease::port).collect();
        assert_eq!(ports.len(), leases.len());
        assert_eq!(book.lock().len(), 200);
        drop(leases);
        assert!(book.lock().is_empty());
    }

    #[test]
    fn a_booked_port_offered_again_is_passed_over() {
        let book = PortBook::default();
        let mut offers = [7001, 7001, 7001, 7002].into_iter();
        let mut next = || Ok(offers.next().unwrap());
        let first = book.lease_from(&mut next).unwrap();
        let second = book.lease_from(&mut next).unwrap();
        assert_eq!((first.port(), second.port()), (7001, 7002));
        // Released, it may be handed out again.
        drop(first);
        assert_eq!(book.lease_from(|| Ok(7001)).unwrap().port(), 7001);
        // Only booked ports on offer: an error, not a shared port.
        let err = book.lease_from(|| Ok(7002)).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
