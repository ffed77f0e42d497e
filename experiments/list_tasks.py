"""Print every registered task: ``python -m experiments.list_tasks``."""

from algd_jax.envs import describe_tasks

if __name__ == "__main__":
    print(describe_tasks())
