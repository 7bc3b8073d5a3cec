"""The pages' words in English and Chinese; `translator(locale)` gives t(key, **values).

    python -c "from psyassist.app.web.i18n import translator; print(translator('zh')('analysis'))"

A key missing from one language falls back to English, and a key missing from both shows as
the key itself (a test checks that every key the templates use exists in both languages).
"""

from __future__ import annotations

EN = {
    "app_name": "PhyAssist",
    "disclaimer": "PhyAssist drafts suggestions for the counselor. They are not a diagnosis, and the assistant "
                  "never talks to clients.",
    "nav_clients": "Clients", "nav_chat": "Chat", "nav_settings": "Settings", "nav_admin": "Accounts",
    "nav_audit": "Audit log", "switch_language": "Switch language", "logout": "Log out",
    "login_title": "Sign in", "login": "Sign in", "username": "Username", "password": "Password",
    "login_failed": "Wrong username or password.",
    "login_rate_limited": "Too many failed sign-ins. Try again in {minutes} minute(s).",
    "back": "Back", "http_error": "Something went wrong", "http_404": "Not found", "http_403": "Not allowed",
    "http_409": "Not possible right now", "http_400": "Please check what you entered", "http_429": "Too many attempts",
    "http_401": "Please sign in", "http_500": "Server error",
    "clients_title": "Your clients", "search_placeholder": "Search by name or tag", "show_archived": "Archived",
    "search": "Search", "client_name": "Name", "tags": "Tags", "notes": "Notes", "last_session": "Last session",
    "start": "Start", "unreadable": "Unreadable record", "archived": "archived",
    "no_match": "No client matches this search.", "no_clients": "No clients yet. Create the first one on the right.",
    "new_client": "New client", "client_name_hint": "Name or a code, e.g. S.L.",
    "tags_hint": "Comma-separated, e.g. exam anxiety, insomnia", "create": "Create",
    "export_md": "Export Markdown", "export_pdf": "Export PDF", "chat_about": "Chat about this client",
    "new_session": "New session", "session_date": "Session date", "note_template": "Note format",
    "session_input": "What happened in the session",
    "session_input_hint": "Type or paste anything: your notes, the client's own words, observations. The assistant "
                          "turns it into a structured draft you can edit.",
    "analysis": "Analysis", "blank_note": "Write by hand",
    "analysis_hint": "Analysis drafts a note with the client's history as context.",
    "open_drafts": "Unsaved drafts", "notes_timeline": "Session notes (newest first)", "no_notes": "No notes yet.",
    "signed_by": "signed by", "addendum": "Addendum", "versions": "Versions", "edit": "Edit", "sign": "Sign",
    "sign_confirm": "A signed note can no longer be changed; later additions become dated addenda.",
    "sign_now": "Sign the note", "add_addendum": "Add addendum", "save_addendum": "Save addendum",
    "basic_info": "Personal basic information", "history": "History", "save": "Save",
    "client_settings": "Client", "archive": "Archive", "unarchive": "Unarchive", "delete_client": "Delete client",
    "delete_warning": "This deletes the client's notes, drafts and chats for good. Their key is destroyed first: "
                      "not even a backup can bring them back.",
    "delete_type_name": "Type the client's name to confirm", "delete_forever": "Delete for good",
    "delete_mismatch": "The name you typed does not match; nothing was deleted.",
    "draft": "Draft", "writing_draft": "The assistant is writing the draft…",
    "waiting_model": "Waiting for the model…", "noscript_reload": "Reload this page to see the draft when it is ready.",
    "stream_items": "{n} item(s) so far", "stream_context": "Context: {whole} note(s) whole, {summarized} summarized, "
                                                            "{dropped} left out",
    "context_used": "History the model saw", "context_whole": "Whole notes", "context_summarized": "Summarized",
    "context_dropped": "Left out (did not fit)",
    "context_budget": "{tokens} of {budget} tokens of context were used.",
    "provenance": "Where this draft came from", "repaired": "Repairs",
    "empty_item": "(empty)", "origin_help": "Who wrote this item",
    "origin_model": "model", "origin_edited": "edited by you", "origin_counselor": "written by you",
    "origin_regenerated": "regenerated",
    "comment": "Comment", "comment_hint": "What should change? The model reads this when you regenerate.",
    "add_comment": "Add comment", "save_item": "Save", "regenerate": "Regenerate",
    "regenerate_item_help": "Rewrite this item, following your comments",
    "regenerate_section": "Regenerate section",
    "regenerate_section_help": "Rewrite the model's items in this section; items you wrote or edited stay",
    "regenerate_failed": "The model could not regenerate this; the draft is unchanged.",
    "delete": "Delete", "no_items": "No items.", "add_item": "Add item", "add": "Add",
    "basic_info_updates": "Updates to the basic information",
    "basic_info_updates_help": "Saved into the client's basic information (as a new version) when you save the note.",
    "no_change": "No change proposed.", "propose_update": "Add an update", "applied": "applied",
    "save_note": "Save to notes", "redo_draft": "Draft again", "redo_help": "Ask the model for a new draft; items "
                                                                              "you wrote or edited stay",
    "saves_new_note": "Saving creates a new note in the client's timeline.",
    "saves_new_version": "Saving creates a new version of the note (earlier versions stay viewable).",
    "versions_help": "Every saved version, newest first; changes against the version before are marked.",
    "current": "current", "changed": "changed",
    "source_manual": "edited by hand", "source_draft": "from a saved draft",
    "chat_title": "Chat with the assistant", "untitled_chat": "New conversation", "no_chats": "No conversations yet.",
    "new_chat": "New conversation", "chat_client": "About a client (optional)", "no_client": "No client",
    "chat_use_notes": "Let the assistant read this client's notes", "start_chat": "Start",
    "chat_with_notes": "The assistant can read this client's basic information and notes.",
    "chat_without_notes": "The assistant does not see this client's notes.",
    "your_message": "Your message", "chat_hint": "Ask about techniques, the case, next steps…", "send": "Send",
    "level_urgent": "URGENT", "level_concern": "Concern",
    "alert_title": "Possible crisis — please review",
    "alert_source_note": "session input", "alert_source_chat": "chat message", "alert_source_serve": "API",
    "alert_source_other": "other",
    "alert_evidence": "What triggered it",
    "alert_do": "Assess the risk with the client directly (plan, means, timing, protective factors) and make a safety "
                "plan. If there is immediate danger, contact emergency services.",
    "alert_resources": "Crisis resources", "alert_ack_note": "What you did (optional, kept in the audit log)",
    "alert_ack": "Acknowledge",
    "status_generating": "being written", "status_ready": "draft", "status_failed": "failed",
    "status_interrupted": "interrupted", "status_saved": "saved", "status_signed": "signed",
    "status_done": "done",
    "language": "Language", "default_template": "Default note format", "change_password": "Change password",
    "current_password": "Current password", "new_password": "New password (at least 10 characters)",
    "wrong_password": "The current password is wrong.",
    "must_change_password": "You are using a temporary password. Please choose your own now.",
    "accounts": "Accounts", "role": "Role", "active": "Active", "created": "Created", "deactivate": "Deactivate",
    "activate": "Activate", "reset_password": "Reset password", "new_account": "New account",
    "display_name": "Display name", "role_admin": "Administrator", "role_counselor": "Counselor",
    "temp_password_help": "A temporary password is shown once; the person chooses their own at first sign-in.",
    "account_created": "Temporary password for {name} (shown once):",
    "audit_title": "Audit log", "audit_ok": "The log's hash chain is intact ({n} entries). Last hash:",
    "audit_broken": "The audit log's chain is BROKEN", "client_id": "Client id", "filter": "Filter",
    "time": "Time", "kind": "Kind", "who": "Who", "action": "Action", "record": "Record",
    "audit_shown": "{n} of {total} entries shown (newest first).",
    "input_needed": "Write something about the session first: Analysis drafts from your input.",
    "notice_saved": "Saved.", "notice_client_created": "Client created.", "notice_client_deleted":
        "The client and all their records were deleted for good.",
    "notice_logged_out": "You are signed out.", "notice_password_changed": "Password changed.",
    "notice_signed": "The note is signed.", "notice_addendum_saved": "Addendum saved.",
    "notice_note_saved": "Saved to the client's notes.", "notice_alert_acknowledged": "Acknowledged. Thank you.",
}

ZH = {
    "app_name": "PhyAssist",
    "disclaimer": "PhyAssist 为咨询师起草建议，不构成诊断；助手从不与来访者直接交流。",
    "nav_clients": "来访者", "nav_chat": "对话", "nav_settings": "设置", "nav_admin": "账户", "nav_audit": "审计日志",
    "switch_language": "切换语言", "logout": "退出",
    "login_title": "登录", "login": "登录", "username": "用户名", "password": "密码",
    "login_failed": "用户名或密码错误。", "login_rate_limited": "登录失败次数过多，请 {minutes} 分钟后再试。",
    "back": "返回", "http_error": "出错了", "http_404": "未找到", "http_403": "不允许", "http_409": "暂时无法完成",
    "http_400": "请检查输入", "http_429": "尝试次数过多", "http_401": "请先登录", "http_500": "服务器错误",
    "clients_title": "我的来访者", "search_placeholder": "按姓名或标签搜索", "show_archived": "已归档",
    "search": "搜索", "client_name": "姓名", "tags": "标签", "notes": "笔记", "last_session": "最近一次咨询",
    "start": "开始", "unreadable": "无法读取的记录", "archived": "已归档",
    "no_match": "没有符合搜索条件的来访者。", "no_clients": "还没有来访者，请在右侧新建。",
    "new_client": "新建来访者", "client_name_hint": "姓名或代号，如 孙某", "tags_hint": "用逗号分隔，如 考试焦虑, 失眠",
    "create": "创建", "export_md": "导出 Markdown", "export_pdf": "导出 PDF", "chat_about": "就此来访者对话",
    "new_session": "新的咨询", "session_date": "咨询日期", "note_template": "笔记格式",
    "session_input": "本次咨询的情况",
    "session_input_hint": "随意输入或粘贴：你的记录、来访者的原话、观察。助手会整理成可编辑的结构化草稿。",
    "analysis": "分析", "blank_note": "手动撰写", "analysis_hint": "“分析”会结合来访者的历史记录起草笔记。",
    "open_drafts": "未保存的草稿", "notes_timeline": "咨询笔记（最新在前）", "no_notes": "还没有笔记。",
    "signed_by": "签署人", "addendum": "补充说明", "versions": "版本", "edit": "编辑", "sign": "签署",
    "sign_confirm": "签署后笔记不能再修改，之后的补充将作为带日期的补充说明。", "sign_now": "签署笔记",
    "add_addendum": "添加补充说明", "save_addendum": "保存补充说明",
    "basic_info": "个人基本信息", "history": "历史", "save": "保存",
    "client_settings": "来访者", "archive": "归档", "unarchive": "取消归档", "delete_client": "删除来访者",
    "delete_warning": "这将永久删除该来访者的笔记、草稿和对话。其密钥会先被销毁：即使备份也无法恢复。",
    "delete_type_name": "输入来访者姓名以确认", "delete_forever": "永久删除",
    "delete_mismatch": "输入的姓名不一致，未删除任何内容。",
    "draft": "草稿", "writing_draft": "助手正在撰写草稿……", "waiting_model": "等待模型……",
    "noscript_reload": "草稿完成后请刷新本页。", "stream_items": "已生成 {n} 条",
    "stream_context": "上下文：完整笔记 {whole} 篇，摘要 {summarized} 篇，未纳入 {dropped} 篇",
    "context_used": "模型看到的历史", "context_whole": "完整笔记", "context_summarized": "摘要",
    "context_dropped": "未纳入（超出长度）", "context_budget": "上下文使用了 {tokens} / {budget} 个 token。",
    "provenance": "草稿来源", "repaired": "修复",
    "empty_item": "（空）", "origin_help": "此条由谁撰写",
    "origin_model": "模型", "origin_edited": "已修改", "origin_counselor": "手写", "origin_regenerated": "已重新生成",
    "comment": "点评", "comment_hint": "希望如何修改？重新生成时模型会参考。", "add_comment": "添加点评",
    "save_item": "保存", "regenerate": "重新生成", "regenerate_item_help": "按你的点评重写此条",
    "regenerate_section": "重新生成本节", "regenerate_section_help": "重写本节中模型撰写的条目；你写的或改过的条目保留",
    "regenerate_failed": "模型未能重新生成，草稿未改变。",
    "delete": "删除", "no_items": "暂无条目。", "add_item": "添加条目", "add": "添加",
    "basic_info_updates": "基本信息的更新", "basic_info_updates_help": "保存笔记时写入来访者的基本信息（作为新版本）。",
    "no_change": "无更新。", "propose_update": "添加更新", "applied": "已写入",
    "save_note": "保存到笔记", "redo_draft": "重新起草", "redo_help": "让模型重新起草；你写的或改过的条目保留",
    "saves_new_note": "保存后将在时间线中新建一篇笔记。", "saves_new_version": "保存后将生成该笔记的新版本（旧版本仍可查看）。",
    "versions_help": "所有已保存的版本，最新在前；与前一版本的差异已标出。", "current": "当前", "changed": "有改动",
    "source_manual": "手动编辑", "source_draft": "来自保存的草稿",
    "chat_title": "与助手对话", "untitled_chat": "新对话", "no_chats": "还没有对话。", "new_chat": "新对话",
    "chat_client": "关于某位来访者（可选）", "no_client": "不关联来访者", "chat_use_notes": "允许助手阅读该来访者的笔记",
    "start_chat": "开始", "chat_with_notes": "助手可以阅读该来访者的基本信息和笔记。",
    "chat_without_notes": "助手看不到该来访者的笔记。",
    "your_message": "你的消息", "chat_hint": "询问技术、个案、下一步……", "send": "发送",
    "level_urgent": "紧急", "level_concern": "关注",
    "alert_title": "可能的危机——请查看", "alert_source_note": "咨询记录", "alert_source_chat": "对话消息",
    "alert_source_serve": "接口", "alert_source_other": "其他", "alert_evidence": "触发内容",
    "alert_do": "请直接与来访者评估风险（计划、手段、时间、保护因素）并制定安全计划；如有紧迫危险，请联系急救服务。",
    "alert_resources": "危机求助资源", "alert_ack_note": "你采取的措施（可选，记入审计日志）", "alert_ack": "确认已处理",
    "status_generating": "撰写中", "status_ready": "草稿", "status_failed": "失败", "status_interrupted": "已中断",
    "status_saved": "已保存", "status_signed": "已签署", "status_done": "完成",
    "language": "语言", "default_template": "默认笔记格式", "change_password": "修改密码",
    "current_password": "当前密码", "new_password": "新密码（至少 10 个字符）", "wrong_password": "当前密码错误。",
    "must_change_password": "你正在使用临时密码，请现在设置自己的密码。",
    "accounts": "账户", "role": "角色", "active": "启用", "created": "创建时间", "deactivate": "停用", "activate": "启用",
    "reset_password": "重置密码", "new_account": "新建账户", "display_name": "显示名", "role_admin": "管理员",
    "role_counselor": "咨询师", "temp_password_help": "临时密码只显示一次；用户首次登录时设置自己的密码。",
    "account_created": "{name} 的临时密码（只显示一次）：",
    "audit_title": "审计日志", "audit_ok": "日志哈希链完整（{n} 条）。最后哈希：", "audit_broken": "审计日志哈希链已损坏",
    "client_id": "来访者 ID", "filter": "筛选", "time": "时间", "kind": "类型", "who": "操作人", "action": "操作",
    "record": "记录", "audit_shown": "显示 {n} / {total} 条（最新在前）。",
    "input_needed": "请先填写本次咨询的情况：“分析”根据你的输入起草。",
    "notice_saved": "已保存。", "notice_client_created": "已创建来访者。", "notice_client_deleted": "该来访者及其全部记录已永久删除。",
    "notice_logged_out": "已退出。", "notice_password_changed": "密码已修改。", "notice_signed": "笔记已签署。",
    "notice_addendum_saved": "补充说明已保存。", "notice_note_saved": "已保存到来访者的笔记。",
    "notice_alert_acknowledged": "已确认，谢谢。",
}

TABLES = {"en": EN, "zh": ZH}


class Translator:
    def __init__(self, locale: str):
        self.locale = locale if locale in TABLES else "en"
        self.table = TABLES[self.locale]

    def has(self, key: str) -> bool:
        return key in self.table or key in EN

    def __call__(self, key: str, **values) -> str:
        text = self.table.get(key) or EN.get(key) or key
        return text.format(**values) if values else text


def translator(locale: str) -> Translator:
    return Translator(locale)
