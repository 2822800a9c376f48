"""Build or reuse a fleet guest's boot files: rootfs.img, vmlinuz, initrd.img, ssh key.

The image is cached under $NATIVEARM_ARM64_CACHE (default
/var/cache/nativearm-arm64) in a directory named after the guest and a hash of
the recipe (guests.py's row and package lists, this file, image_hooks.sh), so
any change to the recipe builds a new image and an unchanged one is reused.

The foreign-architecture debootstrap needs a qemu-aarch64 binfmt_misc entry.
It is registered inside a private binfmt_misc instance (tests/sandbox/nsrun.py)
with this collection's own binfmt_entry module, so the machine's global
binfmt_misc is never touched.

usage: python3 image.py build GUEST...      (build the missing ones in parallel, print dirs)
       python3 image.py path GUEST          (the cache directory, built or not)
       python3 image.py inside GUEST OUTDIR (internal: runs in the sandbox)
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)

import guests  # noqa: E402

CACHE_ROOT = os.environ.get("NATIVEARM_ARM64_CACHE", "/var/cache/nativearm-arm64")
HOOKS = os.path.join(HERE, "image_hooks.sh")
NSRUN = os.path.join(ROOT, "tests", "sandbox", "nsrun.py")
QEMU_AARCH64 = "/usr/bin/qemu-aarch64-static"
# Bump when the build changes in a way the recipe below does not show.
RECIPE_VERSION = 1
FILES = ("rootfs.img", "vmlinuz", "initrd.img", "id_ed25519", "id_ed25519.pub")


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def mmdebstrap_argv(name, out, hooks=HOOKS):
    """The exact mmdebstrap command that builds guest `name`'s rootfs under `out`."""
    row = guests.GUESTS[name]
    excludes = ["/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*",
                "/usr/share/info/*", "/usr/share/lintian/*",
                # udev's hardware database: nothing on a virtio guest needs it, and
                # compiling it (systemd-hwdb update) under qemu-user took ~40 s of a trixie build.
                "/usr/lib/udev/hwdb.d/*", "/lib/udev/hwdb.d/*"]
    # Kernel modules for hardware the virt machine does not have: less to unpack
    # and for depmod to index (both under qemu-user). Bookworm's packages still
    # name /lib, trixie's /usr/lib: dpkg matches the path the package names.
    for top in ("/lib/modules", "/usr/lib/modules"):
        excludes += ["%s/*/kernel/%s/*" % (top, d) for d in (
            "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/staging",
            "drivers/infiniband", "drivers/iio", "sound")]
    argv = ["mmdebstrap", "--mode=root", "--variant=minbase", "--architectures=arm64",
            "--format=directory",
            "--include=" + ",".join(guests.packages(row)),
            "--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata"]
    argv += ["--dpkgopt=path-exclude=" + p for p in excludes]
    argv += ["--dpkgopt=path-include=/usr/share/doc/*/copyright",
             "--setup-hook=sh %s setup \"$1\" %s" % (hooks, " ".join(guests.INITRAMFS_MODULES)),
             "--customize-hook=sh %s customize \"$1\" %s %s %s"
             % (hooks, name, guests.USER, os.path.join(out, "id_ed25519.pub")),
             row["suite"], os.path.join(out, "rootfs"), guests.MIRROR]
    return argv


def recipe(name):
    """Everything the image depends on, as a JSON-able dict: the guest's row, the exact
    mmdebstrap command (output directory and hook script path left symbolic, so another
    checkout of the same recipe finds the same image), the hook script's text, the image
    size and the kernel files taken out. Editing this file elsewhere does not change it."""
    return {
        "guest": name,
        "row": guests.GUESTS[name],
        "mmdebstrap": mmdebstrap_argv(name, "OUT", hooks="HOOKS"),
        "hooks_sha256": hashlib.sha256(_read(HOOKS)).hexdigest(),
        "size": guests.IMAGE_SIZE,
        "files": list(FILES),
        "recipe_version": RECIPE_VERSION,
    }


def recipe_hash(name):
    text = json.dumps(recipe(name), sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def cache_dir(name):
    return os.path.join(CACHE_ROOT, "%s-%s" % (name, recipe_hash(name)))


def is_complete(path):
    return all(os.path.exists(os.path.join(path, f)) for f in FILES + ("recipe.json",))


def _log(msg):
    sys.stderr.write("[image %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def _phase(times, name, start):
    times[name] = round(time.monotonic() - start, 1)
    _log("%-22s %6.1f s" % (name, times[name]))


# ---------------------------------------------------------------- in the sandbox

def register_qemu_aarch64():
    """Register qemu-aarch64 in the (private) binfmt_misc instance.

    Uses the collection's binfmt_entry module when it exists; before it landed,
    the same row from module_utils was written directly.
    """
    args = {"name": "qemu-aarch64", "arch": "aarch64", "interpreter": QEMU_AARCH64,
            "flags": "F"}
    module = os.path.join(ROOT, "plugins", "modules", "binfmt_entry.py")
    if os.path.exists(module):
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        import ansible_env
        venv_bin = os.path.join(ROOT, ".venv", "bin")
        argv = [os.path.join(venv_bin, "ansible"), "localhost", "-i", "localhost,",
                "-c", "local", "-m", "nativearm.binfmt.binfmt_entry", "-a", json.dumps(args)]
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=ansible_env.collections_path(),
                   ANSIBLE_PYTHON_INTERPRETER=os.path.join(venv_bin, "python"),
                   ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1",
                   PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""))
        subprocess.run(argv, env=env, check=True, stdout=sys.stderr)
        return "binfmt_entry module"
    sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))
    import binfmt_misc
    import presets
    magic, mask, offset = presets.preset("aarch64")
    definition = binfmt_misc.make_definition(
        "qemu-aarch64", QEMU_AARCH64, magic=magic, mask=mask, offset=offset, flags="F")
    binfmt_misc.register(definition)
    return "module_utils direct register"


def build_inside(name, out):
    """Runs inside nsrun.py: register qemu-aarch64, debootstrap, make the image."""
    times = {}
    start = time.monotonic()
    how = register_qemu_aarch64()
    _phase(times, "register qemu-aarch64", start)
    _log("qemu-aarch64 registered in the private instance via %s" % how)

    rootfs = os.path.join(out, "rootfs")
    start = time.monotonic()
    argv = mmdebstrap_argv(name, out)
    subprocess.run(argv, check=True, stdout=sys.stderr)
    _phase(times, "mmdebstrap", start)

    start = time.monotonic()
    boot = os.path.join(rootfs, "boot")
    kernels = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-"))
    if len(kernels) != 1:
        raise SystemExit("expected one kernel in %s, found %s" % (boot, kernels))
    version = kernels[0][len("vmlinuz-"):]
    shutil.copyfile(os.path.join(boot, "vmlinuz-" + version), os.path.join(out, "vmlinuz"))
    shutil.copyfile(os.path.join(boot, "initrd.img-" + version), os.path.join(out, "initrd.img"))
    image = os.path.join(out, "rootfs.img")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", rootfs, image,
                    guests.IMAGE_SIZE], check=True, stdout=sys.stderr)
    shutil.rmtree(rootfs)
    _phase(times, "mkfs.ext4 -d + kernel", start)
    with open(os.path.join(out, "build-times.json"), "w") as f:
        json.dump({"kernel": version, "times": times}, f, indent=1)


# ---------------------------------------------------------------- on the host

def start_build(name):
    """Start building one guest's image in the sandbox; return (proc, tmp, final, t0)."""
    final = cache_dir(name)
    tmp = "%s.tmp-%d" % (final, os.getpid())
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    "nativearm-arm64-" + name, "-f", os.path.join(tmp, "id_ed25519")], check=True)
    log = open(os.path.join(tmp, "build.log"), "w")
    _log("building %s (%s) -> %s, log %s" % (name, guests.GUESTS[name]["suite"], final,
                                             os.path.join(final, "build.log")))
    proc = subprocess.Popen([sys.executable, NSRUN, "--", sys.executable, os.path.abspath(__file__),
                             "inside", name, tmp], stdout=log, stderr=subprocess.STDOUT)
    return proc, tmp, final, time.monotonic(), log


def build(names):
    """Make sure every named guest's image exists; build missing ones in parallel."""
    os.makedirs(CACHE_ROOT, exist_ok=True)
    running = []
    for name in names:
        path = cache_dir(name)
        if is_complete(path):
            _log("%s: cached image %s" % (name, path))
        else:
            running.append((name,) + start_build(name))
    failed = []
    for name, proc, tmp, final, t0, log in running:
        rc = proc.wait()
        log.close()
        if rc != 0:
            failed.append(name)
            with open(os.path.join(tmp, "build.log")) as f:
                tail = f.read()[-4000:]
            _log("%s: build FAILED (rc %d) after %.0f s; log %s\n%s"
                 % (name, rc, time.monotonic() - t0, os.path.join(tmp, "build.log"), tail))
            continue
        with open(os.path.join(tmp, "recipe.json"), "w") as f:
            json.dump(recipe(name), f, indent=1, sort_keys=True)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
        _log("%s: built in %.0f s -> %s" % (name, time.monotonic() - t0, final))
    if failed:
        raise SystemExit("image build failed for: %s" % ", ".join(failed))
    return {name: cache_dir(name) for name in names}


def main(argv):
    if len(argv) >= 2 and argv[0] == "build":
        for name, path in build(argv[1:]).items():
            print("%s %s" % (name, path))
    elif len(argv) == 2 and argv[0] == "path":
        print(cache_dir(argv[1]))
    elif len(argv) == 3 and argv[0] == "inside":
        build_inside(argv[1], argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
