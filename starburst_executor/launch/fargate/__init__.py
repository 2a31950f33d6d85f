"""The ``fargate`` backend: workers as ECS Fargate tasks.

==============  ================================================================
module          its one job
==============  ================================================================
``launcher``    :class:`~.launcher.FargateLauncher`: RunTask, DescribeTasks, StopTask, logs
``taskdef``     the task definition (registered once per content hash) and the network
``sizes``       which (vCPU, memory, ephemeral storage) sizes Fargate accepts; pure checks
``quotas``      the account's Fargate vCPU quota, the vCPUs in use, waves that fit
==============  ================================================================

Nothing is imported here, so ``sizes`` can be used without boto3.
"""
