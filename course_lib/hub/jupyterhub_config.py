"""JupyterHub for a local class: PAM accounts, one local process per user (`make hub`).

Read by `jupyterhub -f`; the class is described by the JSON file in COURSE_HUB_CLASS, written
by `python -m course_lib.hub start` (or the hub test).
"""
import json
import os

c = get_config()  # noqa: F821 (provided by JupyterHub's config loader)

with open(os.environ["COURSE_HUB_CLASS"]) as f:
    klass = json.load(f)
state = klass["state_dir"]

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = klass["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = klass["hub_port"]
c.ConfigurableHTTPProxy.command = [klass["proxy"]]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{klass['proxy_api_port']}"
c.JupyterHub.db_url = "sqlite:///" + os.path.join(state, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(state, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(state, "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True

# Unix accounts and their passwords; the instructor is the hub's admin.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(klass["students"]) | {klass["instructor"]}
c.Authenticator.admin_users = {klass["instructor"]}

# Each user's server runs as that user, in the course's environment (its kernel too).
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [os.path.join(klass["env_bin"], "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180


def per_role(spawner):
    """The instructor works in their course folder with formgrader; students in their home."""
    user = spawner.user.name
    instructor = user == klass["instructor"]
    role = "instructor" if instructor else "student"
    spawner.environment.update({
        "PATH": klass["env_bin"] + ":/usr/local/bin:/usr/bin:/bin",
        "JUPYTER_CONFIG_PATH": os.path.join(klass["config_dir"], role),
    })
    if instructor:
        spawner.environment["COURSE_ROOT"] = klass["course_dir"]
        spawner.notebook_dir = klass["course_dir"]


c.Spawner.pre_spawn_hook = per_role
