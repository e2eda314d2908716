"""The names of the Dagster jobs, ops, schedules and sensors (DESIGN.md section 3), in one place.

``defs/`` defines them under these names; the runner, the Python API and the CLI launch and
configure them by these names. Plain strings: importing this module loads no Dagster.
"""

SYNC_JOB = "langsmith_access_sync"
SYNC_SCHEDULE = "langsmith_access_sync_schedule"
# The sync's op that takes the run config (shrink guard, membership route).
MEMBERS_OP = "raw_members"

# The inventory (DESIGN.md section 9): credentials, access policies, service accounts, SSO
# settings and the audit log, on a schedule of their own.
INVENTORY_JOB = "langsmith_access_inventory"
INVENTORY_SCHEDULE = "langsmith_access_inventory_schedule"
INVENTORY_OP = "raw_inventory"

PROVISION_JOB = "provision_workspace_roles"
PROVISIONING_SENSOR = "provisioning_queue_sensor"
# The provisioning job's ops: the first takes the run config, the second returns the outcomes,
# the third what the rebuild after them found (changes made outside langsmith-access).
SELECT_REQUESTS_OP = "select_requests"
APPLY_REQUESTS_OP = "apply_requests"
REFRESH_OP = "refresh_access_history"

# The tag every run of one org carries, its value the org's slug. deploy/dagster.yaml (and the
# Helm values) let one run per value run at a time: an org's runs never overlap, orgs run side
# by side.
ORG_TAG = "langsmith_access/org"
# The tag of a run the command line executes in its own process: that process, as
# processes.this_process() says it. A run whose process was killed stays STARTED in a persistent
# instance; the sensors fail it (processes.has_ended) rather than wait for run monitoring's hour.
PROCESS_TAG = "langsmith_access/process"

# A provisioning run that refused what it was given carries this tag (see defs/provisioning).
REFUSED_INPUT_TAG = "langsmith_access/refused_input"

# Every job's runs carry Dagster's run-time limit: the daemon's run monitoring fails a run still
# going after an hour (a sync of 50,000 members takes minutes). As a tag on the jobs, not only
# deploy/dagster.yaml's max_runtime_seconds, it holds on Kubernetes too, whose Helm chart has no
# key for that setting.
MAX_RUNTIME_SECONDS = 3600
RUN_TIME_LIMIT_TAGS = {"dagster/max_runtime": str(MAX_RUNTIME_SECONDS)}

# Access governance (DESIGN.md section 10): decisions from the Launchpad, and the two sensors
# that end time-bound access and deliver notifications without a CLI command.
DECIDE_JOB = "decide_access_request"
DECIDE_OP = "decide_request"
EXPIRY_SENSOR = "access_expiry_sensor"
OUTBOX_SENSOR = "notification_outbox_sensor"
