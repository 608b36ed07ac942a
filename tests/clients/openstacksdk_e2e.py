"""End-to-end drive of `tripod serve` with openstacksdk (a stock OpenStack client).

Usage: python openstacksdk_e2e.py API_URL NBD_HOST:PORT PASSWORD

Authenticates with a password against /identity/v3, then through the block-storage proxy:
creates a volume, writes a pattern over NBD with qemu-io, snapshots it, overwrites, rolls
back with the EVS rollback call, checks the first pattern is back, extends it online and
checks the new space reads zeros; makes a QoS spec and a volume type (with a `qos:` extra
spec) and retypes the volume to it; then deletes everything. Exits non-zero on any mismatch.
"""
import subprocess
import sys
import time

import openstack

api, nbd, password = sys.argv[1], sys.argv[2], sys.argv[3]
conn = openstack.connect(
    auth_url=api + "/identity/v3",
    username="admin",
    password=password,
    project_name="admin",
    user_domain_name="Default",
    project_domain_name="Default",
    region_name="RegionOne",
    block_storage_api_version=sys.argv[4] if len(sys.argv) > 4 else "3",
)
bs = conn.block_storage


def qemu_io(volume_id, *commands):
    args = ["qemu-io", "-f", "raw"]
    for c in commands:
        args += ["-c", c]
    args.append(f"nbd://{nbd}/{volume_id}")
    out = subprocess.run(args, capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode != 0 or "fail" in text.lower() or "error" in text.lower():
        raise SystemExit(f"qemu-io {commands} failed: {text}")
    return text


def wait_status(get, status, what, timeout=120):
    deadline = time.time() + timeout
    while True:
        obj = get()
        if obj.status == status:
            return obj
        if obj.status.startswith("error"):
            raise SystemExit(f"{what} went to {obj.status}")
        if time.time() > deadline:
            raise SystemExit(f"{what} stuck in {obj.status}")
        time.sleep(0.2)


vol = bs.create_volume(size=1, name="e2e")
vol = wait_status(lambda: bs.get_volume(vol.id), "available", "volume")
assert vol.size == 1 and vol.name == "e2e", vol
print("created", vol.id)

qemu_io(vol.id, "write -P 0x5a 0 1M", "write -P 0x11 1023M 1M")
snap = bs.create_snapshot(volume_id=vol.id, name="before")
snap = wait_status(lambda: bs.get_snapshot(snap.id), "available", "snapshot")
print("snapshot", snap.id)

qemu_io(vol.id, "write -P 0xee 0 1M")
qemu_io(vol.id, "read -P 0xee 0 1M")

resp = bs.post(
    f"/cloudsnapshots/{snap.id}/rollback",
    json={"rollback": {"volume_id": vol.id}},
)
if resp.status_code != 202 or resp.json() != {"rollback": {"volume_id": vol.id}}:
    raise SystemExit(f"rollback answered {resp.status_code} {resp.text}")
wait_status(lambda: bs.get_volume(vol.id), "available", "volume after rollback")
qemu_io(vol.id, "read -P 0x5a 0 1M", "read -P 0x11 1023M 1M")
print("rolled back")

bs.extend_volume(vol, 2)
vol = wait_status(lambda: bs.get_volume(vol.id), "available", "volume after extend")
assert vol.size == 2, vol.size
qemu_io(vol.id, "read -P 0x11 1023M 1M", "read -P 0 1024M 1M", "read -P 0 2047M 1M")
print("extended")

version = sys.argv[4] if len(sys.argv) > 4 else "3"
spec = bs.create_qos_spec(name=f"gold-{version}", consumer="both", total_iops_sec="900")
assert spec.specs == {"total_iops_sec": "900"}, spec.specs
vtype = bs.create_type(name=f"gold-{version}", description="900 IOPS")
bs.update_type_extra_specs(vtype, **{"qos:total_bytes_sec": "104857600"})
bs.associate_qos_spec(spec, vtype.id)
assert [a.name for a in bs.qos_spec_associations(spec)] == [f"gold-{version}"]
assert bs.get_type(vtype.id).extra_specs["qos:total_bytes_sec"] == "104857600"
bs.retype_volume(vol, vtype, migration_policy="never")
vol = wait_status(lambda: bs.get_volume(vol.id), "available", "volume after retype")
assert vol.volume_type == f"gold-{version}", vol.volume_type
qemu_io(vol.id, "read -P 0x11 1023M 1M")
print("retyped")

bs.delete_snapshot(snap)
bs.wait_for_delete(snap, wait=120)
bs.delete_volume(vol)
bs.wait_for_delete(vol, wait=120)
assert bs.find_volume(vol.id, ignore_missing=True) is None
bs.disassociate_qos_spec(spec, vtype.id)
bs.delete_qos_spec(spec, ignore_missing=False)
bs.delete_type(vtype, ignore_missing=False)
print("ok")
