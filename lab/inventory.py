"""The inventory file that tells playbooks, the inventory plugin and rulebooks about the lab.

Every hypervisor is a host of group ``kvm_hypervisors`` with ``libvirt_uri``: the variable
the collection reads wherever it takes hypervisors from an inventory. ``localhost`` is in
group ``controller``, for rulebooks that run controller playbooks. The hypervisors'
``kvm_lab_*`` variables say where the lab guest's kernel, initrd and serial logs are, for
playbooks that build lab guests with the collection's own modules.
"""

import yaml

from .layout import host_uri


def inventory_document(specs, layout=None, transport="tcp"):
    hosts = {
        spec.name: {
            "libvirt_uri": host_uri(spec, transport, layout),
            "ansible_host": spec.address,
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "kvm_lab_host_uuid": spec.host_uuid,
        }
        for spec in specs
    }
    group = {"hosts": hosts}
    if layout is not None:
        group["vars"] = {
            "kvm_lab_kernel": str(layout.image_dir / "vmlinuz"),
            "kvm_lab_initrd": str(layout.image_dir / "initrd.gz"),
            "kvm_lab_guest_logs": str(layout.guests_dir),
        }
    # ansible-rulebook's run_playbook limits a playbook to the rulebook's hosts: the
    # controller plays (rebalance) need localhost named in the inventory
    controller = {"hosts": {"localhost": {"ansible_connection": "local",
                                          "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}
    return {"all": {"children": {"kvm_hypervisors": group, "controller": controller}}}


def write_inventory(path, specs, layout=None, transport="tcp"):
    header = f"# Written by the kvmops.virt lab ('make lab-up'); rewritten on every start. Transport: {transport}.\n"
    text = yaml.safe_dump(inventory_document(specs, layout, transport), sort_keys=False, default_flow_style=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + text)
