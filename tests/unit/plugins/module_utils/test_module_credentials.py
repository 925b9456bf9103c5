"""Credentials of every module default to the same environment variables the inventory
plugin reads, so one AWX credential type (injecting them) serves modules and inventory."""

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule


def module_with(args):
    with patch_module_args(args):
        return LibvirtModule(argument_spec={})


def test_username_and_password_come_from_the_environment_and_stay_secret(monkeypatch):
    monkeypatch.setenv("KVMOPS_LIBVIRT_USERNAME", "ops")
    monkeypatch.setenv("KVMOPS_LIBVIRT_PASSWORD", "s3cret-from-env")
    module = module_with({})
    assert (module.params["username"], module.params["password"]) == ("ops", "s3cret-from-env")
    assert "s3cret-from-env" in module.no_log_values


def test_options_given_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("KVMOPS_LIBVIRT_USERNAME", "ops")
    monkeypatch.delenv("KVMOPS_LIBVIRT_PASSWORD", raising=False)
    module = module_with({"username": "admin"})
    assert module.params["username"] == "admin" and module.params["password"] is None
