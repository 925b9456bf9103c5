"""The inventory file that tells playbooks, the inventory plugin and rulebooks about the lab.

Every hypervisor is a host of group ``kvm_hypervisors`` with ``libvirt_uri``: the variable
the collection reads wherever it takes hypervisors from an inventory.
"""

import yaml


def inventory_document(specs):
    hosts = {
        spec.name: {
            "libvirt_uri": spec.uri,
            "ansible_host": spec.address,
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "kvm_lab_host_uuid": spec.host_uuid,
        }
        for spec in specs
    }
    return {"all": {"children": {"kvm_hypervisors": {"hosts": hosts}}}}


def write_inventory(path, specs):
    header = "# Written by the kvmops.virt lab ('make lab-up'); rewritten on every start.\n"
    text = yaml.safe_dump(inventory_document(specs), sort_keys=False, default_flow_style=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + text)
