"""Where a lab guest is: on which lab hosts it runs and is defined, as libvirt says."""

import libvirt

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection


def where(lab, name):
    """{host: (active, persistent)} for every lab host that has the guest."""
    found = {}
    for host in ("kvm1", "kvm2", "kvm3"):
        with LibvirtConnection(lab.host(host).spec.uri) as conn:
            try:
                domain = conn.handle.lookupByName(name)
            except libvirt.libvirtError:  # not there
                continue
            found[host] = (bool(domain.isActive()), bool(domain.isPersistent()))
    return found
