# The lab's JupyterLab: lab.sh start puts this directory on JUPYTER_CONFIG_PATH, so that a
# learner's own ~/.jupyter still has the last word.
import os

c = get_config()  # noqa: F821 (Jupyter's config files are run with get_config defined)

# Terminals run bash, even where the environment has no SHELL (Jupyter would start /bin/sh),
# and not as a login shell, whose /etc/profile would set PATH anew and lose the lab's labkit.
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash"]}

# A lesson opens unmodified, though the kernel fills in its metadata (lesson_contents.py).
c.ServerApp.contents_manager_class = "labkit.lessons.lesson_contents.LessonContents"

# The lab's defaults for JupyterLab's settings, in overrides.json there: no news popup.
c.LabApp.app_settings_dir = os.path.join(os.path.dirname(__file__), "..", "lab-settings")
