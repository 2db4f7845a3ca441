pytest_plugins = ["gpt2course.check.plugin"]
