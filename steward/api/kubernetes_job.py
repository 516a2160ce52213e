"""`spec.retraining.kubernetesJob`: run the training as a batch/v1 Job instead of a Ray Job.

A typed subset of a Job's pod template, not a free-form one: the CRD stays structural and strict (an unknown
field is refused by the API server, not carried silently), and every field here is one Steward knows how to
put in the Job it builds. The container runs `spec.retraining.entrypoint` with the same contract as the Ray
Job (the `STEWARD_TRAINING_JOB` environment variable, the result written to the store); its CPUs, GPUs and
memory are the entrypoint's, so one spec means the same on either runner. The image must hold the trainer's
code and dependencies: `runtimeEnv.pip` and `runtimeEnv.workingDir` are Ray's and are refused here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from steward.api.types import SpecInt, SpecModel, SpecStr

# Kubernetes object names: a DNS-1123 subdomain (Secrets, ServiceAccounts).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"


class PullPolicy(StrEnum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(SpecModel):
    """A pod toleration, e.g. for a GPU node pool's taint."""

    key: Annotated[SpecStr | None, Field(max_length=316)] = None
    operator: TolerationOperator = TolerationOperator.EQUAL
    value: Annotated[SpecStr | None, Field(max_length=63)] = None
    effect: TaintEffect | None = None
    toleration_seconds: Annotated[SpecInt | None, Field(ge=0, le=31_536_000)] = None


class KubernetesJob(SpecModel):
    """Where and as whom the training Job's pod runs; what it runs is `spec.retraining.entrypoint`."""

    image: Annotated[
        SpecStr,
        Field(min_length=1, max_length=1000, description="Container image holding the trainer and its deps."),
    ]
    image_pull_policy: PullPolicy | None = None
    service_account_name: Annotated[
        SpecStr | None,
        Field(pattern=DNS_SUBDOMAIN, max_length=253, description="ServiceAccount of the training pod."),
    ] = None
    env_from_secrets: Annotated[
        list[Annotated[SpecStr, Field(pattern=DNS_SUBDOMAIN, max_length=253)]],
        Field(
            max_length=20,
            description="Secrets in the namespace whose keys become the pod's environment (the MLflow and "
            "S3 credentials the job needs; the operator never copies its own).",
        ),
    ] = []
    node_selector: Annotated[
        dict[SpecStr, Annotated[SpecStr, Field(pattern=LABEL_VALUE)]],
        # Keys are not checked here (a structural schema cannot constrain map keys, and the CRD and this
        # model must agree): a bad key is refused by the API server when the Job is created, and said.
        Field(max_length=20, description="Node labels the training pod must run on (e.g. a GPU pool)."),
    ] = {}
    tolerations: Annotated[list[Toleration], Field(max_length=20)] = []
    backoff_limit: Annotated[
        SpecInt,
        Field(ge=0, le=10, description="Pod retries before the Job fails (each retry trains from scratch)."),
    ] = 0
    ttl_seconds_after_finished: Annotated[
        SpecInt,
        Field(
            ge=60, le=2_592_000, description="Kubernetes deletes the finished Job (and its logs) after this."
        ),
    ] = 86_400
