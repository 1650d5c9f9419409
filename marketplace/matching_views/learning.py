"""``/matching/learning``: the learned ranking for organizers (judgements per kind, the active
ranking and its held-out numbers, the trained models) and the button that queues training.

Login is required by the blueprint; the service allows organizers only (403 for others). The
POST is checked by the app-wide CSRFProtect before the view runs.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from marketplace.auth.forms import EmptyForm
from marketplace.matching_views import bp
from marketplace.services.matching import learning as learning_service

# 「人工权重」 or 「学习排序模型 vX」 for the engine status card (a global: imported macros see it).
bp.add_app_template_global(learning_service.ranking_label, "current_ranking_label")


@bp.get("/learning")
def learning():
    page = learning_service.page(current_user)
    return render_template("matching/learning.html", page=page, form=EmptyForm())


@bp.post("/learning/train")
def learning_train():
    job = learning_service.queue_learning(current_user)
    flash(f"已提交训练任务（任务 #{job.id}），完成后本页显示结果。", "success")
    return redirect(url_for("jobs.show", id=job.id))
