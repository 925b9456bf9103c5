"""Hypervisors of libvirt's test driver from private node files (test:///path.xml), so every
figure (cores, memory, guests and their tags) is the test's own."""

NODE_XML = """<node>
  <cpu><mhz>3000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads>
    <active>4</active></cpu>
  <memory>16777216</memory>
  {domains}
</node>"""
DOMAIN_XML = """<domain type="test">
    <name>{name}</name><uuid>{uuid}</uuid>
    <memory unit="MiB">{memory}</memory><vcpu>2</vcpu><os><type>hvm</type></os>
    <metadata><kvmops:guest xmlns:kvmops="https://github.com/kvmops/kvmops.virt/1">{tags}</kvmops:guest></metadata>
  </domain>"""
PINNED = '<kvmops:tag name="migratable" type="bool">false</kvmops:tag>'


def node(tmp_path, name, domains):
    """The URI of a test-driver hypervisor with 4 cores, 16 GiB and ``domains`` (dicts name,
    uuid, memory in MiB, tags as metadata XML) running."""
    path = tmp_path / ("%s.xml" % name)
    path.write_text(NODE_XML.format(domains="\n".join(DOMAIN_XML.format(**domain) for domain in domains)))
    return "test://%s" % path


def web_and_db(tmp_path):
    """Two test-driver hypervisors: k1 runs web (2 GiB) and db (4 GiB, tagged migratable=false), k2 runs nothing."""
    return [dict(name="k1", uri=node(tmp_path, "k1", [
        dict(name="web", uuid="6f1c3e4a-0000-4000-8000-000000000001", memory=2048, tags=""),
        dict(name="db", uuid="6f1c3e4a-0000-4000-8000-000000000002", memory=4096, tags=PINNED)])),
        dict(name="k2", uri=node(tmp_path, "k2", []))]
