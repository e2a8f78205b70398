"""Which webhook events queue generation jobs, against a real Redis (embedded and REDIS_URL)."""

from __future__ import annotations

from dataclasses import replace

from redis import Redis
from rq import Queue

from alvar.generator.jobs import generate_variations, generation_key
from alvar.generator.reaction import GenerationReaction
from alvar.label_config import load
from alvar.labelstudio.webhook import parse_event
from alvar.queues import DEFAULT_JOB_POLICY
from alvar.settings import GENERATION_QUEUE

CONFIG = load("annotate")


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def event(action: str, annotations: list[dict], tasks: list[dict], config: str | None = CONFIG) -> dict:
    many = action == "ANNOTATIONS_CREATED"
    return {"action": action, "project": {"id": 9, "label_config": config},
            "annotation": annotations if many else annotations[0], "task": tasks if many else tasks[0]}


def test_each_human_label_queues_one_job_and_nothing_else_does(redis_url: str) -> None:
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    queue = Queue(GENERATION_QUEUE, connection=connection)
    react = GenerationReaction(connection, queue, replace(DEFAULT_JOB_POLICY, timeout=123))
    tasks = [{"id": 1, "data": {"text": "my landlord kept my deposit"}},
             {"id": 2, "data": {"text": "a variation", "origin": "llm"}},
             {"id": 3, "data": {"text": "skipped one"}},
             {"id": 4, "data": {"text": "no label chosen"}},
             {"id": 5, "data": {"text": "the second human one"}},
             {"id": 6, "data": {"text": "a seed label", "strategy": "bootstrap"}},
             {"id": 7, "data": {"text": "a typo in the label"}}]
    annotations = [{"id": 11, "task": 1, "result": choice("legal-advice")},
                   {"id": 12, "task": 2, "result": choice("legal-advice")},
                   {"id": 13, "task": 3, "result": choice("discard"), "was_cancelled": True},
                   {"id": 14, "task": 4, "result": []},
                   {"id": 15, "task": 5, "result": choice("medical-advice")},
                   {"id": 16, "task": 6, "result": choice("discard")},
                   {"id": 17, "task": 7, "result": choice("legal-advise")}]
    outcome = react(parse_event(event("ANNOTATIONS_CREATED", annotations, tasks)))["generation"]
    assert [item["status"] for item in outcome] == ["queued", "skipped", "skipped", "skipped", "queued", "skipped",
                                                    "skipped"]
    assert "variation" in outcome[1]["reason"] and "skipped" in outcome[2]["reason"]
    assert "bootstrap" in outcome[5]["reason"] and "labels outside the config" in outcome[6]["reason"]
    first = queue.fetch_job(generation_key(9, 1, "legal-advice"))
    assert first.func is generate_variations and first.timeout == 123 and first.retries_left == 3
    assert first.args == (9, 1, "legal-advice", "my landlord kept my deposit")
    assert first.meta["annotation"] == 11
    assert queue.count == 2

    again = react(parse_event(event("ANNOTATION_CREATED", annotations[:1], tasks[:1])))["generation"]
    assert again == [{"status": "already queued", "job_id": first.id}] and queue.count == 2
    # A second annotator who agrees: the same (task, label), so the same job; nothing new is queued.
    agreeing = [{**annotations[0], "id": 21, "completed_by": 2}]
    assert react(parse_event(event("ANNOTATION_CREATED", agreeing, tasks[:1])))["generation"] == again

    relabelled = [{**annotations[0], "result": choice("financial-advice")}]
    updated = react(parse_event(event("ANNOTATION_UPDATED", relabelled, tasks[:1])))["generation"]
    assert updated == [{"status": "queued", "job_id": generation_key(9, 1, "financial-advice")}]
    # A -> B -> A before the first job ran: the job for A is still waiting and is not queued a second time.
    back = react(parse_event(event("ANNOTATION_UPDATED", annotations[:1], tasks[:1])))["generation"]
    assert back == [{"status": "already queued", "job_id": first.id}] and queue.job_ids.count(first.id) == 1

    assert react(parse_event({"action": "TASKS_CREATED", "project": {"id": 9}})) is None
    no_config = react(parse_event(event("ANNOTATION_CREATED", annotations[:1], tasks[:1], config=None)))
    assert no_config["generation"] == "skipped" and "label config" in no_config["reason"]
    assert queue.count == 3


def test_a_finished_label_is_queued_again_without_its_text(redis_url: str) -> None:
    """A label that comes back after its job finished: queued again (to make its set current again), but without
    the text, so the job looks in Label Studio before it would ask the LLM."""
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    queue = Queue(GENERATION_QUEUE, connection=connection)
    react = GenerationReaction(connection, queue)
    payload = event("ANNOTATION_CREATED", [{"id": 31, "task": 8, "result": choice("self-harm")}],
                    [{"id": 8, "data": {"text": "nothing helps any more"}}])
    (queued,) = react(parse_event(payload))["generation"]
    job = queue.fetch_job(queued["job_id"])
    job.set_status("finished")
    queue.remove(job)
    (again,) = react(parse_event(payload))["generation"]
    assert again == queued and queue.fetch_job(queued["job_id"]).args == (9, 8, "self-harm", None)
