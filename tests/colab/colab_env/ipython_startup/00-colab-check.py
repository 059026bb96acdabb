# Start-up of the Colab check's kernel (copied into the kernel's IPython profile).
# Like Colab's kernel, it imports google.colab (here, a stand-in) when it starts.
# And a shell command from a cell (`!cmd`, `%pip ...`) that fails raises, so a
# failed install or download fails the check instead of scrolling past.
import google.colab  # noqa: F401


def _colab_check_strict_system():
    shell = get_ipython()  # noqa: F821
    system = shell.system

    def checked_system(cmd):
        system(cmd)
        code = shell.user_ns.get("_exit_code", 0)
        if code:
            raise RuntimeError(f"Colab check: the shell command {cmd!r} failed with exit status {code}")

    shell.system = checked_system


_colab_check_strict_system()
del _colab_check_strict_system
