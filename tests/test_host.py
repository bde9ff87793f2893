"""Results name their host: the CPU's generation as well as its model name."""

from vle_kit import host

FIELDS = """vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
stepping\t: 0
flags\t\t: fpu avx avx2 fma
"""
CPUINFO = "\n".join(f"processor\t: {i}\n{FIELDS}" for i in range(2))  # two cores


def test_a_host_is_named_by_vendor_family_model_and_stepping(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    monkeypatch.setattr(host, "CPUINFO", tmp_path / "cpuinfo")
    info = host.cpuinfo()
    assert host.cpu_model(info) == "AMD EPYC"
    assert host.cpu_kind(info) == "AuthenticAMD family 23 model 49 stepping 0"
    assert host.cpu_flags(info) == {"fpu", "avx", "avx2", "fma"}
    record = host.host_info()
    assert record["cpu_kind"] == "AuthenticAMD family 23 model 49 stepping 0"
    assert not record["avx512"]
    assert "(no AVX-512, AuthenticAMD family 23 model 49 stepping 0)" in host.describe(record)


def test_a_host_without_cpuinfo_is_still_described(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "CPUINFO", tmp_path / "missing")
    info = host.host_info()
    assert info["cpu"] and info["cpu_kind"] is None and info["avx512"] is False
    assert "no AVX-512)" in host.describe(info)
