from marketplace.workspace import bp  # noqa: F401


@bp.get("/")
def index():
    return "ok"
