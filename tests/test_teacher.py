"""The teacher's draft jobs of a generative project: a real Label Studio 1.23.2, a real Redis, a real RQ worker
(the generation worker's ThreadWorker, in burst mode) and the loopback chat-completions server."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from label_studio_sdk import LabelStudio
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from alvar.backend.learner import TransformerClassifier
from alvar.generator.reaction import GenerationReaction
from alvar.generator.teacher import draft_key, enqueue_drafts, queue_draft
from alvar.generator.threaded_workers import ThreadWorker
from alvar.generator.usage import total_usage
from alvar.generator.worker_resources import WorkerResources
from alvar.label_config import load
from alvar.labelstudio.client import as_dict
from alvar.labelstudio.generation_config import parse_generation_control
from alvar.labelstudio.webhook import parse_event
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.reconcile import reconcile_projects
from alvar.settings import GENERATION_QUEUE, Settings, load_settings
from tests.chat_server import ChatServer, Reply, default_output

CONFIG = load("generate")
CONTROL = parse_generation_control(CONFIG)
H, NOT_H = CONTROL.attributes[0], CONTROL.attributes[1]
VERSION = "student-0001"
ATTEMPTS = 2
_names = count()


@pytest.fixture
def llm() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


@pytest.fixture
def connection(external_redis_url: str) -> Redis:
    connection = Redis.from_url(external_redis_url)
    connection.flushdb()
    return connection


def interim(text: str) -> str:
    """The student's interim output of an input, published as the project's version before the teacher runs."""
    return f"interim output for {text[:12]}"


def new_project(ls: LabelStudio, inputs: list[str]) -> tuple[int, list[int]]:
    """A generative project whose tasks carry batch 1 and the student's interim outputs of version VERSION."""
    project_id = ls.projects.create(title=f"teacher {next(_names)}", label_config=CONFIG).id
    assert project_id is not None
    request = [{"data": {"input": text, "batch": 1}} for text in inputs]
    response = ls.projects.import_tasks(id=project_id, request=request, return_task_ids=True)  # type: ignore[arg-type]
    task_ids = list(response.task_ids or [])  # type: ignore[attr-defined]
    predictions = [{"task": task_id, "result": CONTROL.output_result(interim(text)), "score": 0.5,
                    "model_version": VERSION} for task_id, text in zip(task_ids, inputs)]
    ls.projects.import_predictions(id=project_id, request=predictions)  # type: ignore[arg-type]
    ls.projects.update(id=project_id, model_version=VERSION)
    return project_id, task_ids


def settings_for(label_studio: LabelStudioServer, redis_url: str, llm: ChatServer, tmp_path: Path,
                 **extra: Any) -> Settings:
    return load_settings(redis_url=redis_url, label_studio_url=label_studio.url,
                         label_studio_api_key=label_studio.token, openai_base_url=llm.base_url, openai_api_key="test",
                         cache_dir=tmp_path / "cache", model_dir=tmp_path / "models", teacher_model="teacher-1",
                         teacher_attempts=ATTEMPTS, llm_input_price=1.0, llm_output_price=2.0, llm_max_retries=2,
                         torch_threads=1, **extra)


def work(connection: Redis, settings: Settings) -> None:
    queue = Queue(GENERATION_QUEUE, connection=connection)
    ThreadWorker([queue], connection=connection, name=f"teacher-test-{os.getpid()}-{next(_names)}",
                 resources=WorkerResources(settings)).work(burst=True)


def task(ls: LabelStudio, task_id: int) -> dict[str, Any]:
    return as_dict(ls.tasks.get(id=str(task_id)))


def outcome(connection: Redis, project_id: int, task_id: int) -> dict[str, Any]:
    job = Job.fetch(draft_key(project_id, task_id), connection=connection)
    assert job.get_status() == "finished", job.meta
    result = job.return_value()
    assert isinstance(result, dict)
    return result


def prefilled(found: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    return [(CONTROL.review(p["result"]).output, p["model_version"]) for p in found["predictions"]]


def test_each_selected_input_gets_one_prefilled_draft_exactly_once(ls: LabelStudio, external_redis_url: str,
                                                                   connection: Redis, llm: ChatServer,
                                                                   label_studio: LabelStudioServer,
                                                                   tmp_path: Path) -> None:
    inputs = ["Those people ruin every town they move into.", "Women cannot lead a team, it is a fact.",
              "They should all go back where they came from."]
    project_id, task_ids = new_project(ls, inputs)
    settings = settings_for(label_studio, external_redis_url, llm, tmp_path)
    assert sorted(enqueue_drafts(connection, project_id, task_ids)) == sorted(draft_key(project_id, t)
                                                                              for t in task_ids)
    work(connection, settings)

    for task_id, text in zip(task_ids, inputs):
        found = task(ls, task_id)
        data = found["data"]
        assert data["draft"] == default_output(text) and data["draft_status"] == "drafted"
        assert data["draft_key"] == draft_key(project_id, task_id) and data["draft_attempts"] == 1
        assert data["teacher_model"] == "teacher-1" and data["draft_template"].startswith("teacher@")
        assert data["student_version"] == VERSION and data["input"] == text and data["batch"] == 1
        assert prefilled(found) == [(default_output(text), VERSION)]
        assert found["predictions"][0]["score"] == 0.0  # R is not trained yet
        result = outcome(connection, project_id, task_id)
        assert result["status"] == "drafted" and result["r_loaded"] is False
        meta = Job.fetch(draft_key(project_id, task_id), connection=connection).meta
        assert meta["requests"] == 1 and meta["prompt_tokens"] > 0 and meta["cost_usd"] > 0
    assert {request["model"] for request in llm.requests} == {"teacher-1"}
    usage = total_usage(connection)
    assert usage.requests == 3 and usage.cost_usd > 0
    prompt = llm.requests_for(inputs[0])[0]["messages"]
    assert f"<source>\n{inputs[0]}\n</source>" in prompt[1]["content"] and H in prompt[1]["content"]
    assert "never follow" in prompt[0]["content"]

    # Queued again (a repeated selection): nothing new.
    assert enqueue_drafts(connection, project_id, task_ids) == []
    # A worker died between the two writes: the re-run adds the missing prediction, asks no LLM, adds no second.
    ls.predictions.delete(id=task(ls, task_ids[0])["predictions"][0]["id"])
    for task_id in task_ids:
        queue_draft(connection, Queue(GENERATION_QUEUE, connection=connection), project_id, task_id,
                    rerun_finished=True)
    work(connection, settings)
    assert [outcome(connection, project_id, t)["status"] for t in task_ids] == ["drafted", "already drafted",
                                                                                  "already drafted"]
    for task_id, text in zip(task_ids, inputs):
        assert prefilled(task(ls, task_id)) == [(default_output(text), VERSION)]
    assert len(llm.requests) == 3


def test_faults_are_retried_or_screened_out_and_reviewed_tasks_are_never_touched(
        ls: LabelStudio, external_redis_url: str, connection: Redis, llm: ChatServer,
        label_studio: LabelStudioServer, tmp_path: Path) -> None:
    cases = {
        "429": "People like them are a plague on this country.",
        "refusal": "Migrants only come here to steal our jobs.",
        "echo": "Disabled people are a burden on all of us.",
        "blank": "Old people should not be allowed to vote.",
        "garbage": "That religion is a threat to our way of life.",
        "reviewed": "Gay people should keep away from children.",
        "empty": "   ",
    }
    project_id, task_ids = new_project(ls, list(cases.values()))
    ids = dict(zip(cases, task_ids))
    llm.script(cases["429"], Reply(status=429))
    answers = {"refusal": Reply("I'm sorry, but I can't help with that request."),
               "echo": Reply(json.dumps({"output": cases["echo"]})),
               "blank": Reply(json.dumps({"output": "   "})),
               "garbage": Reply("<html>Bad gateway</html>")}
    for case, reply in answers.items():
        llm.script(cases[case], *[reply] * ATTEMPTS)
    accepted = [*CONTROL.output_result("A person's own answer."),
                {"from_name": CONTROL.verdict_name, "to_name": CONTROL.input_name, "type": "choices",
                 "value": {"choices": ["accept"]}}]
    annotation = ls.annotations.create(id=ids["reviewed"], result=accepted, was_cancelled=False, lead_time=1.0)
    settings = settings_for(label_studio, external_redis_url, llm, tmp_path)
    enqueue_drafts(connection, project_id, task_ids)
    work(connection, settings)

    drafted = task(ls, ids["429"])
    assert drafted["data"]["draft"] == default_output(cases["429"])
    assert prefilled(drafted) == [(default_output(cases["429"]), VERSION)]
    assert len(llm.requests_for(cases["429"])) == 2
    reasons = {"refusal": "refusal", "echo": "echo of the input", "blank": "blank",
               "garbage": "answer without an output"}
    for case, reason in reasons.items():
        found = task(ls, ids[case])
        assert found["data"]["draft_status"] == f"screened out: {reason}", case
        assert "draft" not in found["data"] and prefilled(found) == [(interim(cases[case]), VERSION)], case
        assert found["data"]["draft_attempts"] == ATTEMPTS and len(llm.requests_for(cases[case])) == ATTEMPTS
        result = outcome(connection, project_id, ids[case])
        assert result["status"] == f"screened out: {reason}" and result["reasons"] == [reason] * ATTEMPTS
    follow_up = llm.requests_for(cases["refusal"])[1]["messages"]
    assert len(follow_up) == 3 and "(refusal)" in follow_up[2]["content"]
    assert all(message["role"] != "assistant" for message in follow_up)  # the refusal is never put back

    reviewed = task(ls, ids["reviewed"])
    assert outcome(connection, project_id, ids["reviewed"])["status"] == "already reviewed"
    assert "draft" not in reviewed["data"] and "draft_status" not in reviewed["data"]
    assert prefilled(reviewed) == [(interim(cases["reviewed"]), VERSION)]
    assert [a["id"] for a in reviewed["annotations"]] == [annotation.id]
    assert llm.requests_for(cases["reviewed"]) == []
    assert outcome(connection, project_id, ids["empty"])["status"] == "skipped: the input is empty"

    # The sweep queues no draft (every batched task is drafted, screened out, reviewed or skipped), and the
    # student's first training for the one verified pair.
    (swept,) = reconcile_projects(settings, connection, [project_id], client=ls)
    assert swept.error is None and swept.queued == [] and swept.sources == len(cases)
    assert swept.verified_pairs == 1 and swept.training is not None and swept.training["training"] == "queued"


def test_the_sweep_queues_a_lost_draft(ls: LabelStudio, external_redis_url: str, connection: Redis, llm: ChatServer,
                                       label_studio: LabelStudioServer, tmp_path: Path) -> None:
    project_id, (lost, unbatched) = new_project(ls, ["They are animals, all of them.", "A plain remark."])
    ls.tasks.update(id=str(unbatched), data={"input": "A plain remark."})
    settings = settings_for(label_studio, external_redis_url, llm, tmp_path)
    (swept,) = reconcile_projects(settings, connection, [project_id], client=ls)
    assert swept.error is None and swept.queued == [draft_key(project_id, lost)] and swept.sources == 1
    (again,) = reconcile_projects(settings, connection, [project_id], client=ls)
    assert again.queued == [] and again.pending == 1
    work(connection, settings)
    draft = default_output("They are animals, all of them.")
    assert prefilled(task(ls, lost)) == [(draft, VERSION)]
    assert "draft" not in task(ls, unbatched)["data"]

    # A training switched the project's version while the draft was written, and the old version's predictions
    # went with the draft's: the task keeps data.draft but nothing pre-fills it. The sweep queues the job again,
    # which writes only the missing prediction, under the new version, and asks the LLM nothing.
    newer = "20990101-000000-000000-0000beef"
    ls.predictions.create(task=lost, result=CONTROL.output_result(interim("x")), score=0.1, model_version=newer)
    ls.projects.update(id=project_id, model_version=newer)
    ls.predictions.delete(id=next(p["id"] for p in task(ls, lost)["predictions"] if p["model_version"] == VERSION))
    requests = len(llm.requests)
    (unshown,) = reconcile_projects(settings, connection, [project_id], client=ls)
    assert unshown.queued == [draft_key(project_id, lost)]
    work(connection, settings)
    assert prefilled(task(ls, lost)) == [(draft, newer)] and len(llm.requests) == requests
    (settled,) = reconcile_projects(settings, connection, [project_id], client=ls)
    assert settled.queued == [] and settled.pending == 0


def test_a_confident_attribute_model_screens_drafts_and_scores_the_kept_one(
        ls: LabelStudio, external_redis_url: str, connection: Redis, llm: ChatServer,
        label_studio: LabelStudioServer, tmp_path: Path) -> None:
    """R, trained here to call the loopback's default answers not-H, rejects them; a scripted answer it judges H
    is kept, and the prediction's score is R's entropy on it."""
    countering = ["Everyone deserves to be treated with dignity, whoever they are.",
                  "Most people in that group work hard and care for their families.",
                  "Studies show that diversity makes our communities stronger.",
                  "Blaming a whole group for one person's act is unfair."]
    defaults = [default_output(text) for text in ("Those people are lazy and dumb.", "They steal from us all.",
                                                  "Nobody wants them living here.", "Send all of them away now.")]
    judge = TransformerClassifier(load_settings().base_model, epochs=10, learning_rate=1e-3, num_threads=1,
                                  random_state=0).fit(countering + defaults, [H] * 4 + [NOT_H] * 4)
    judge.save(tmp_path / "attribute")
    inputs = ["Immigrants are criminals, every single one.", "Those people never contribute anything."]
    project_id, (rejected, kept) = new_project(ls, inputs)
    kept_output = "People who came here build businesses and raise families, like everyone else."
    llm.script(inputs[1], Reply(), Reply(json.dumps({"output": kept_output})))
    settings = settings_for(label_studio, external_redis_url, llm, tmp_path,
                            attribute_model=str(tmp_path / "attribute"))
    enqueue_drafts(connection, project_id, [rejected, kept])
    work(connection, settings)

    screened = task(ls, rejected)
    assert screened["data"]["draft_status"].startswith(f"screened out: fails the attribute: R judges it {NOT_H!r}")
    assert prefilled(screened) == [(interim(inputs[0]), VERSION)]
    drafted = task(ls, kept)
    assert drafted["data"]["draft"] == kept_output and drafted["data"]["draft_attempts"] == 2
    ((output, version),) = prefilled(drafted)
    assert output == kept_output and version == VERSION
    assert 0.0 < drafted["predictions"][0]["score"] < math.log(2)  # R's entropy (nats) on the kept draft
    assert outcome(connection, project_id, kept)["r_loaded"] is True


def test_a_generative_project_never_gets_variations(connection: Redis) -> None:
    """The webhook reaction answers "skipped" for a generative project's annotations, never an error."""
    queue = Queue(GENERATION_QUEUE, connection=connection)
    event = parse_event({"action": "ANNOTATION_CREATED", "project": {"id": 9, "label_config": CONFIG},
                         "annotation": {"id": 3, "task": 4, "was_cancelled": False,
                                        "result": CONTROL.output_result("an output")},
                         "task": {"id": 4, "data": {"input": "an input"}}})
    assert GenerationReaction(connection, queue)(event) == {
        "generation": "skipped", "reason": "a generative project never gets variations"}
    assert queue.count == 0


def test_a_configuration_error_fails_the_draft_at_once(ls: LabelStudio, external_redis_url: str, connection: Redis,
                                                        llm: ChatServer, label_studio: LabelStudioServer,
                                                        tmp_path: Path) -> None:
    """An attribute value H the config does not have, or an R that does not load: no retry can fix it, so the job
    fails at its first attempt, with the reason, and the task is left as it was."""
    project_id, (task_id,) = new_project(ls, ["Those people are all the same."])
    queue = Queue(GENERATION_QUEUE, connection=connection)
    for extra, error in (({"attribute_value": "no-such-value"}, "LabelConfigError"),
                         ({"attribute_model": str(tmp_path)}, "AttributeModelError")):
        queue_draft(connection, queue, project_id, task_id)
        work(connection, settings_for(label_studio, external_redis_url, llm, tmp_path, **extra))
        job = Job.fetch(draft_key(project_id, task_id), connection=connection)
        assert job.get_status() == "failed" and job.retries_left == 0 and job.meta["last_error"].startswith(error)
        assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
    assert "draft" not in task(ls, task_id)["data"] and llm.requests == []
