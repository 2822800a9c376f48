# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: counts, per host, the module executions a playbook run made (each one a
round trip to the host), and writes them as JSON to $NATIVEARM_MODULE_COUNT_FILE at the end."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: module_count
type: aggregate
short_description: count module executions per host (tests only)
description:
  - >-
    At the end of the run, writes a JSON object to the file named by E(NATIVEARM_MODULE_COUNT_FILE):
    for each host, C(runs) (how many module executions), C(modules) (their actions, in order) and
    C(unknown) (C(no_log) task results, which cannot be told apart).
  - >-
    A module execution is a task (or loop item) result returned by a module on the host, which
    carries C(invocation); controller-side actions (set_fact, debug, assert, fail, include_*)
    return none. An async task counts its launch and every poll. A C(no_log) result hides
    C(invocation): it is listed under C(unknown) instead of being guessed either way.
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "module_count"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._hosts = {}

    def _host(self, result):
        return self._hosts.setdefault(result._host.get_name(), {"runs": 0, "modules": [], "unknown": []})

    def _count(self, result, label=None):
        host = self._host(result)
        host["runs"] += 1
        host["modules"].append(label or result._task.action)

    def _result(self, result):
        data = result._result
        if "results" in data:  # a loop's summary: its items were counted one by one
            return
        if "ansible_job_id" in data:  # an async launch (its polls are counted as they come)
            self._count(result, result._task.action + " (async launch)")
        elif "invocation" in data:
            self._count(result)
        elif data.get("censored"):
            self._host(result)["unknown"].append(result._task.get_name())

    def v2_runner_on_ok(self, result):
        self._result(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result)

    def v2_runner_on_skipped(self, result):
        self._result(result)  # skipped by a condition: no invocation, not counted

    def v2_runner_item_on_ok(self, result):
        self._result(result)

    def v2_runner_item_on_failed(self, result):
        self._result(result)

    def v2_runner_item_on_skipped(self, result):
        self._result(result)

    def v2_runner_on_async_poll(self, result):
        self._count(result, "async_status")

    def v2_runner_on_async_ok(self, result):
        self._count(result, "async_status")

    def v2_runner_on_async_failed(self, result):
        self._count(result, "async_status")

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("NATIVEARM_MODULE_COUNT_FILE")
        if path:
            with open(path, "w") as f:
                json.dump(self._hosts, f, indent=1, sort_keys=True)
