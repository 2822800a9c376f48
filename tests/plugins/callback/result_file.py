# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: appends every task result as one JSON line to
$NATIVEARM_RESULT_FILE, so tests read module results without scraping output."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: result_file
type: aggregate
short_description: write task results as JSON lines (tests only)
description: Appends each task result to the file named by E(NATIVEARM_RESULT_FILE).
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "result_file"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._task_started = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_started = time.monotonic()

    def _dump(self, result, status):
        path = os.environ.get("NATIVEARM_RESULT_FILE")
        if not path:
            return
        data = dict(result._result)
        data["_status"] = status
        data["_task"] = result._task.get_name()
        data["_host"] = result._host.get_name()
        if self._task_started is not None:
            data["_seconds"] = time.monotonic() - self._task_started
        with open(path, "a") as f:
            f.write(json.dumps(data, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._dump(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._dump(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._dump(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._dump(result, "unreachable")
