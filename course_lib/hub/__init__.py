"""A local class on JupyterHub (`make hub`): accounts, exchange, environment and the hub itself.

`classroom` prepares the machine (Unix accounts, the nbgrader exchange, per-role Jupyter
configuration, the instructor's copy of the course), `jupyterhub_config.py` is the hub's
configuration, and `__main__` starts and cleans up (`python -m course_lib.hub start|clean`).
"""
