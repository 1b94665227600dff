# The lab's kernels (lab.sh start points IPYTHONDIR here): one line, not a traceback, for the
# two errors every learner meets, a kernel restarted mid-lesson and a cell interrupted.
c = get_config()  # noqa: F821 (IPython's config files are run with get_config defined)
c.InteractiveShellApp.extensions = ["labkit.lessons.kernel_help"]
