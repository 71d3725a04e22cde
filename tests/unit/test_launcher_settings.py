"""The launcher's settings for the store as a process of its own and for replicas: what it
refuses before it starts anything, and what each replica is given."""
import signal

import pytest

from common import crypto
from common.config import SettingsError
from ops import platform as platform_module
from ops.platform import Platform


def test_replicas_without_the_store_as_a_process_are_refused_naming_the_setting_to_use():
    with pytest.raises(SettingsError, match="MANTELZORG_REPLICAS \\(declaration\\) needs "
                                            "MANTELZORG_STORE=process: .* would diverge"):
        Platform(environ={"MANTELZORG_REPLICAS": "declaration=2"})


def test_one_replica_of_each_needs_no_store_process():
    assert [p.name for p in Platform(environ={"MANTELZORG_REPLICAS": "declaration=1"}).processes] \
        == ["registry", "declaration", "travel_costs", "campaign", "notifications", "gateway"]


@pytest.mark.parametrize("value, complaint", [
    ("gateway=2", "'gateway' is not one of registry"),
    ("declaraton=2", "'declaraton' is not one of"),
    ("declaration=0", "declaration='0', the count must be a whole number from 1"),
    ("declaration=two", "the count must be a whole number"),
])
def test_a_wrong_replica_setting_is_refused(value, complaint):
    with pytest.raises(SettingsError, match=complaint):
        Platform(environ={"MANTELZORG_STORE": "process", "MANTELZORG_REPLICAS": value})


def test_the_store_setting_takes_two_values_and_refuses_a_database_of_its_own():
    with pytest.raises(SettingsError, match="MANTELZORG_STORE must be embedded or process"):
        Platform(environ={"MANTELZORG_STORE": "separate"})
    with pytest.raises(SettingsError, match="starts the store itself: unset MONGO_URI"):
        Platform(environ={"MANTELZORG_STORE": "process", "MONGO_URI": "mongodb://db:27017/"})


def test_each_replica_has_its_own_metrics_address_and_the_same_keys(tmp_path):
    launcher = Platform(environ={"MANTELZORG_STORE": "process",
                                 "MANTELZORG_REPLICAS": "declaration=2,travel_costs=3",
                                 "MANTELZORG_DATA_DIR": str(tmp_path)},
                        process_environ={"declaration": {"BROKER_USER": "declaration"}})
    names = [p.name for p in launcher.processes]
    assert names == ["registry", "declaration", "declaration-2", "travel_costs",
                     "travel_costs-2", "travel_costs-3", "campaign", "notifications", "gateway"]
    assert len(set(launcher.addresses.values())) == len(names)
    launcher.store_environ = {"MONGO_URI": "mongodb://127.0.0.1:1/",
                              **crypto.development_keys(str(tmp_path))}
    first, second = (launcher.process_settings(launcher.instance(name))
                     for name in ("declaration", "declaration-2"))
    assert second.pop("DECLARATION_WEB_ADDRESS") == launcher.addresses["declaration-2"]
    assert first == second
    assert first["BROKER_USER"] == "declaration"
    assert set(first) == {"MONGO_URI", "BROKER_USER", *crypto.PROCESS_KEYS["declaration"],
                          "MANTELZORG_GATEWAY_CALL_PUBLIC_KEY", "MANTELZORG_OPERATOR_CALL_PUBLIC_KEY"}
    gateway = launcher.process_settings(launcher.instance("gateway"))
    assert "MANTELZORG_GATEWAY_CALL_KEY" in gateway and "MANTELZORG_SIGNING_KEY" not in gateway


def test_the_development_keys_are_those_the_processes_would_make_in_the_data_folder(tmp_path):
    keys = crypto.development_keys(str(tmp_path))
    config = {"DATA_DIR": str(tmp_path)}
    sealed = crypto.data_cipher(config, environ={}).encrypt("x")
    assert crypto.data_cipher(environ={crypto.DATA_KEY: keys[crypto.DATA_KEY]}).decrypt(sealed) \
        == "x"
    assert crypto.keyed_hash(config, environ={})("a") == \
        crypto.keyed_hash(environ={crypto.LOOKUP_KEY: keys[crypto.LOOKUP_KEY]})("a")
    assert crypto.development_keys(str(tmp_path)) == keys


class Dead:
    """A child process that has died."""
    pid = 4242

    @staticmethod
    def poll():
        return -signal.SIGKILL


def test_a_replica_and_the_store_that_die_are_restarted_each_as_itself(monkeypatch, tmp_path):
    clock = [1000.0]
    monkeypatch.setattr(platform_module.time, "monotonic", lambda: clock[0])
    launcher = Platform(environ={"MANTELZORG_STORE": "process",
                                 "MANTELZORG_REPLICAS": "declaration=2",
                                 "MANTELZORG_DATA_DIR": str(tmp_path)}, say=lambda line: None)
    spawned, stores = [], []

    def spawn(name, command, environ):
        spawned.append((name, environ))
        launcher.children[name] = Dead()
        launcher.started_at[name] = clock[0]
        launcher.restart_due.pop(name, None)

    monkeypatch.setattr(launcher, "_spawn", spawn)
    monkeypatch.setattr(launcher, "start_store", lambda: stores.append(clock[0]))
    launcher.children.update({"declaration-2": Dead(), "store": Dead()})
    launcher.supervise()                 # both deaths seen, restarts due in 1 s
    assert spawned == [] and stores == []
    clock[0] += 1
    launcher.supervise()
    assert stores == [clock[0]]
    (name, environ), = spawned
    assert name == "declaration-2"
    assert environ["DECLARATION_WEB_ADDRESS"] == launcher.addresses["declaration-2"]
    assert environ["DECLARATION_WEB_ADDRESS"] != launcher.addresses["declaration"]
