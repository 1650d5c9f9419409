from marketplace.auth import bp  # noqa: F401


@bp.route("/login")
def login():
    return "ok"


@bp.post("/logout")
def logout():
    return "ok"


@bp.route("/register")
def register():
    return "ok"
